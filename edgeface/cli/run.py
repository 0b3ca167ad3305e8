"""``edgeface run`` (the field unit's daemon) and ``edgeface trigger`` (take a picture now)."""

from __future__ import annotations

import os
import signal
from typing import Any

import click

from ..errors import EdgefaceError
from .app import EXIT_FAILED, AppContext, emit_json, pass_app


@click.command("run")
@click.option(
    "--demo", is_flag=True, help="Run the bundled demo (what `edgeface run` does when nothing is configured)."
)
@click.option("--once", is_flag=True, help="Exit when the folder has been processed (capture.folder.once).")
@click.option("--duration", type=float, help="Stop (and drain) after this many seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print the run's summary as one JSON object at exit.")
@pass_app
def run_cmd(app: AppContext, demo: bool, once: bool, duration: float | None, as_json: bool) -> None:
    """Run the field unit: capture, detect, match, track, queue and send results until stopped.

    SIGTERM (or Ctrl-C) stops capture, finishes every queued frame and exits 0 with nothing lost.
    With no configuration at all (no --config, $EDGEFACE_CONFIG, EDGEFACE_* settings or --set),
    it runs the bundled demo: sample photos against a sample gallery, results queued offline.
    """
    from ..daemon import Daemon
    from ..daemon import demo as demo_mod

    demo_mode = demo or demo_mod.wants_demo(app.config_path, app.overrides)
    if demo_mode:
        config = demo_mod.demo_config(app.overrides)
        if (
            not any(o.startswith("logging.level") for o in app.overrides)
            and "EDGEFACE_LOGGING__LEVEL" not in os.environ
        ):
            from ..logs import configure_logging

            configure_logging("warning", config.logging.format)  # the summary on stdout is the demo
        version = demo_mod.install_sample_gallery(config)
        click.echo(
            f"edgeface: no configuration given: running the bundled demo (sample photos in "
            f"{demo_mod.PHOTOS}, sample gallery version {version} signed with the DEMO key)",
            err=True,
        )
    else:
        config = app.with_overrides(**{"capture.folder.once": "true" if once else None})
        demo_mod.refuse_demo_key(config)
    daemon = Daemon(config, duration_s=duration)
    code = daemon.run()
    summary = daemon.summary.as_dict()
    if as_json:
        emit_json({**summary, "exit_code": code, "outbox": str(config.outbox.path), "demo": demo_mode})
    else:
        _print_summary(summary, str(config.outbox.path), demo_mode, bool(config.mqtt.host))
    if code:
        raise click.exceptions.Exit(code)


def _print_summary(s: dict[str, Any], outbox: str, demo_mode: bool, online: bool) -> None:
    if demo_mode:
        for r in sorted(s["recent"], key=lambda r: str(r["source"])):
            at = f" at threshold {r['threshold']:.3f}" if r.get("threshold") is not None else ""
            if r["decision"] == "match":
                what = f"{r['name'] or r['identity']} ({r['identity']}), similarity {r['score']:.3f}{at}"
            elif r["decision"] == "no_match":
                what = (
                    f"nobody in the gallery{at} (closest {r['identity']}, {r['score']:.3f})"
                    if r["identity"]
                    else f"nobody in the gallery{at}"
                )
            else:
                what = "; ".join(r["reasons"])
            click.echo(f"  {r['source']!s:28s} {r['decision']:9s} {what}")
    results = ", ".join(f"{v} {k}" for k, v in sorted(s["results"].items())) or "no results"
    click.echo(
        f"processed {s['frames']} frames, {s['faces']} faces: {results}"
        + (f"; {s['merged']} faces folded into tracks" if s["merged"] else "")
        + (f"; {s['unreadable']} unreadable" if s["unreadable"] else "")
        + (f"; {s['failed']} failed" if s["failed"] else "")
        + (f"; {s['dropped']} live frames dropped" if s["dropped"] else "")
    )
    where = "waiting for the broker" if online else "queued offline (no broker configured: mqtt.host)"
    click.echo(f"{s['outbox_pending']} results {where} in {outbox}")
    if demo_mode:
        click.echo(
            "next: `edgeface config defaults > edgeface.toml`, set [capture] and [mqtt], then "
            "`edgeface --config edgeface.toml run` (see docs/field-unit.md)"
        )


@click.command("trigger")
@click.option(
    "--tag",
    help="Case or body tag the picture's results carry (e.g. BODY-0042); it wins over a code in the picture.",
)
@pass_app
def trigger_cmd(app: AppContext, tag: str | None) -> None:
    """Make the running daemon take a picture now (trigger mode; sends it SIGUSR1).

    With --tag, the tag is left for the daemon in <run.state_dir>/triggers/ before the signal.
    """
    from ..capture.tags import TagError, clean_tag
    from ..capture.triggers import request_dir, write_request
    from ..daemon import status as status_mod

    doc = status_mod.read_status(status_mod.status_path(app.config))
    if status_mod.daemon_state(doc) != "running" or doc is None:
        raise EdgefaceError(
            f"no running daemon found (status file {status_mod.status_path(app.config)}); start it with `edgeface run`"
        )
    if app.config.capture.mode != "trigger" or "signal" not in app.config.capture.triggers:
        click.echo(
            "edgeface: warning: capture.mode is not 'trigger' with 'signal' in capture.triggers; "
            "the daemon will ignore the signal",
            err=True,
        )
    request = None
    if tag is not None:
        try:
            tag = clean_tag(tag)
            request = write_request(request_dir(app.config.run.state_dir), tag)
        except TagError as e:
            raise click.UsageError(f"--tag: {e}") from None
        except OSError as e:
            click.echo(
                f"edgeface: error: cannot leave the tag in {request_dir(app.config.run.state_dir)} ({e}); "
                "run as the service user",
                err=True,
            )
            raise click.exceptions.Exit(EXIT_FAILED) from None
    try:
        os.kill(int(doc["pid"]), signal.SIGUSR1)
    except PermissionError:
        if request is not None:
            request.unlink(missing_ok=True)
        click.echo(
            f"edgeface: error: not allowed to signal pid {doc['pid']}; run as the service user, or "
            "`sudo systemctl kill -s USR1 edgeface`",
            err=True,
        )
        raise click.exceptions.Exit(EXIT_FAILED) from None
    click.echo(f"triggered pid {doc['pid']}" + (f" (tag {tag!r})" if tag is not None else ""))
