"""``edgeface outbox``: inspect the disk outbox and drain it to the broker."""

from __future__ import annotations

import signal
import time
from typing import Any

import click

from ..bench import report
from .app import AppContext, emit_json, human_bytes, pass_app


@click.group("outbox")
def outbox_group() -> None:
    """The disk outbox of results waiting for the broker."""


def _open(app: AppContext, *, payloads: bool = False) -> Any:
    """The unit's outbox; ``payloads``: with the device key, to open sealed payloads (not needed for counts)."""
    from ..outbox import Outbox

    return Outbox.for_unit(app.config) if payloads else Outbox.from_config(app.config.outbox)


@outbox_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--quarantined",
    "show_quarantined",
    type=int,
    default=5,
    show_default=True,
    help="List this many of the latest quarantined rows.",
)
@pass_app
def status(app: AppContext, as_json: bool, show_quarantined: int) -> None:
    """Queue depth by priority, bytes, oldest result, counters and quarantined rows."""
    cfg = app.config.outbox
    if not cfg.path.exists():
        raise click.ClickException(f"no outbox at {cfg.path} (nothing was ever queued there; check outbox.path)")
    with _open(app) as box:
        stats = box.stats().as_dict()
        quarantined = box.quarantined(show_quarantined) if show_quarantined else []
    stats["path"] = str(cfg.path)
    stats["limits"] = {
        "max_results": cfg.max_results,
        "max_bytes": cfg.max_bytes,
        "on_full": cfg.on_full,
        "ttl_s": cfg.ttl_s,
        "match_ttl_s": cfg.match_ttl_s,
    }
    if as_json:
        emit_json({**stats, "quarantined_rows": quarantined})
        return
    click.echo(
        f"outbox {cfg.path}: {stats['pending']} pending, {human_bytes(stats['bytes'])} "
        f"(limits {cfg.max_results} results, {human_bytes(cfg.max_bytes)}, on_full {cfg.on_full})"
    )
    click.echo(
        report.table(
            ["priority", "rows", "size"],
            [[k, v["rows"], human_bytes(v["bytes"])] for k, v in stats["by_priority"].items()],
        )
    )
    age = stats["oldest_age_s"]
    click.echo(f"oldest pending: {'-' if age is None else f'{age:.1f} s ago'}")
    click.echo(
        "counters: "
        + ", ".join(
            f"{k} {stats[k]}"
            for k in ("enqueued", "delivered", "dropped_overflow", "expired", "refused_full", "quarantined_total")
        )
    )
    for q in quarantined:
        click.echo(f"quarantined {q['id']}: {q['reason']} ({human_bytes(q['bytes'])})")


@outbox_group.command("drain")
@click.option("--until-empty", is_flag=True, help="Exit once the outbox is empty and everything is acknowledged.")
@click.option("--timeout", type=float, default=None, help="With --until-empty: give up after this many seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print the publisher's counters as JSON at exit.")
@pass_app
def drain(app: AppContext, until_empty: bool, timeout: float | None, as_json: bool) -> None:
    """Send pending results to the broker ([mqtt] section) until stopped (SIGTERM/Ctrl-C) or empty."""
    import threading

    from ..mqtt import Publisher

    box = _open(app, payloads=True)
    pub = Publisher.from_config(app.config.mqtt, app.config.device, box, model_id=app.config.models.embedder)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    pub.start()
    started = time.monotonic()
    drained = False
    try:
        while not stop.is_set() and pub.alive:
            if until_empty and pub.wait_drained(0.2):
                drained = True
                break
            if timeout is not None and time.monotonic() - started > timeout:
                break
            if not until_empty:
                stop.wait(0.2)
    finally:
        pub.stop()
        box.close()
    figures = {**pub.stats.as_dict(), "drained": drained, "seconds": round(time.monotonic() - started, 3)}
    if as_json:
        emit_json(figures)
    else:
        click.echo(
            f"published {figures['published']}, acknowledged {figures['acked']}, "
            f"refused by broker {figures['refused_by_broker']}, reconnects {max(0, figures['connects'] - 1)}"
        )
    if pub.error is not None:
        raise click.exceptions.Exit(1)
    if until_empty and not drained:
        click.echo("edgeface: error: the outbox was not empty when drain stopped", err=True)
        raise click.exceptions.Exit(1)
