"""``edgeface doctor``: is this unit fit to work? One line per check (``--json``: one object).

Exit status: 0 every check passed (or did not apply), 1 at least one failed, 4 some warned and none
failed, 2 a configuration error (as every command).
"""

from __future__ import annotations

import click

from .app import AppContext, emit_json, pass_app


@click.command("doctor")
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object: every check, the counts, the exit status."
)
@click.option(
    "--only",
    multiple=True,
    type=click.Choice(["python", "models", "camera", "clock", "disk", "gallery", "broker", "watchdog"]),
    help="Run only this group of checks (repeatable).",
)
@pass_app
def doctor_cmd(app: AppContext, as_json: bool, only: tuple[str, ...]) -> None:
    """Check the unit: Python and packages, model files (SHA-256), backend and inference time per model,
    camera, clock, disk, the installed gallery (signature, age), the broker (TLS identity, CONNACK) and
    systemd's watchdog.

    Exit status 0: all passed; 1: a check failed; 4: warnings only; 2: configuration error. With no
    configuration, on a machine where the demo ran and no unit did, it checks the demo's setup.
    """
    from ..daemon import demo as demo_mod
    from ..daemon import status as status_mod
    from ..doctor.report import document, exit_status, render
    from ..doctor.run import run_checks

    config, demo = app.config, None
    if demo_mod.wants_demo(app.config_path, app.overrides) and not status_mod.status_path(config).exists():
        d = demo_mod.demo_dir()
        if (d / "gallery" / "current").is_symlink():  # `edgeface run` with nothing configured ran here
            config, demo = demo_mod.demo_config(app.overrides, directory=d, fresh=False), d
    checks = run_checks(config, only)
    if as_json:
        emit_json(document(checks, **({"demo": str(demo)} if demo else {})))
    else:
        if demo is not None:
            click.echo(f"(nothing configured: checking the bundled demo's setup in {demo})")
        click.echo(render(checks))
    raise click.exceptions.Exit(exit_status(checks))
