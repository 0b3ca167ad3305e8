"""``edgeface ingest``: receive results from the broker and store each result id once (central side)."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import click

from .app import AppContext, pass_app


@click.command("ingest")
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="SQLite file to store results in (default: the ingest.db setting).",
)
@click.option("--client-id", help="MQTT client id of this worker (default: ingest.client_id or ingest-<host>).")
@click.option("--stats-every", type=float, default=60.0, show_default=True, help="Log the counters this often (s).")
@click.option(
    "--stats-json",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the final counters to this JSON file at exit.",
)
@pass_app
def ingest(
    app: AppContext, db_path: Path | None, client_id: str | None, stats_every: float, stats_json: Path | None
) -> None:
    """Subscribe to every device's results (MQTT 5 shared subscription), validate, store once.

    Run several with different --client-id to share the load. Malformed messages are counted,
    logged and kept (first bytes) in the database's 'rejected' table. Stops on SIGTERM/Ctrl-C.
    """
    from ..logs import get_logger
    from ..mqtt import Ingest, ResultStore

    log = get_logger("edgeface.ingest")
    store = ResultStore(db_path or app.config.ingest.db)
    worker = Ingest.from_config(app.config.mqtt, app.config.ingest, store, client_id=client_id)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    worker.start()
    next_log = time.monotonic() + stats_every
    try:
        while not stop.wait(0.2):
            if worker.error is not None or not worker._thread or not worker._thread.is_alive():
                break
            if time.monotonic() >= next_log:
                next_log += stats_every
                log.info("ingest.stats", **worker.stats.as_dict())
    finally:
        worker.stop()
        store.close()
    figures = worker.stats.as_dict()
    log.info("ingest.stopped", **figures)
    if stats_json is not None:
        stats_json.write_text(json.dumps(figures, indent=2) + "\n")
    if worker.error is not None:
        raise click.exceptions.Exit(1)
