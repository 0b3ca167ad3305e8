"""``edgeface unit``: the field unit as a whole (its crypto-erase)."""

from __future__ import annotations

import os

import click

from .app import EXIT_FAILED, AppContext, emit_json, pass_app


@click.group("unit")
def unit_group() -> None:
    """The field unit as a whole: crypto-erase everything personal on it."""


@unit_group.command("wipe")
@click.option("--yes", is_flag=True, help="Really destroy the device key and every personal file on the unit.")
@click.option("--demo", is_flag=True, help="Wipe the bundled demo's folder (what `edgeface run` made with no config).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: ok, destroyed, not_destroyed, notes.")
@pass_app
def wipe_cmd(app: AppContext, yes: bool, demo: bool, as_json: bool) -> None:
    """Crypto-erase the unit: destroy the device key first, then overwrite and delete its data.

    The data is the outbox (with its WAL/SHM files), run.state_dir, retention.dir, the installed gallery and the
    enrollment workspace. Stop the daemon first (a running unit holds the key in memory and recreates files).
    Exit status 1, with what to do, when any key source or file could not be destroyed: a key in the
    environment, a TPM-sealed credential's source, a file that cannot be deleted.
    """
    from ..protect.wipe import wipe_unit

    if not yes:
        raise click.UsageError("this destroys the device key and every personal file on the unit; pass --yes")
    config = app.config
    if demo:
        from ..daemon import demo as demo_mod

        config = demo_mod.demo_config(app.overrides, fresh=False)
    from ..daemon import status as status_mod

    doc = status_mod.read_status(status_mod.status_path(config))
    running = status_mod.daemon_state(doc) == "running" and doc is not None and int(doc.get("pid", 0)) != os.getpid()
    report = wipe_unit(config, enrollment=not demo)
    if running and doc is not None:
        report.ok = False
        report.not_destroyed.append(
            f"the daemon (pid {doc.get('pid')}) is running and holds the device key in memory; what it writes from "
            "now on is left behind: stop it (systemctl stop edgeface)"
        )
    if as_json:
        emit_json(report.as_dict())
    else:
        click.echo("unit wiped: the device key and the data are destroyed" if report.ok else "WIPE INCOMPLETE:")
        for x in report.not_destroyed:
            click.echo(f"  NOT DESTROYED: {x}")
        for x in report.destroyed:
            click.echo(f"  destroyed: {x}")
        for x in report.notes:
            click.echo(f"  note: {x}")
    if not report.ok:
        click.echo(
            "edgeface: WIPE INCOMPLETE: "
            + "; ".join(report.not_destroyed)
            + " — do the above, then run `edgeface unit wipe --yes` again",
            err=True,
        )
        raise click.exceptions.Exit(EXIT_FAILED)
