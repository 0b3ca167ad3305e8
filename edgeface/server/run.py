"""``edgeface server run``: migrate, then serve the web application and run the ingest workers.

One process serves the web application (waitress, ``server.threads`` threads) and ingest worker 0; with
``server.ingest_workers = N`` it starts workers 1..N-1 as child processes (``--no-web --worker-index k``),
each its own MQTT client on the shared subscription, so storing uses more than one core. More hosts:
run ``edgeface server run`` on each with a distinct ``ingest.client_id`` (see deploy/scaling.md).
A crashed worker is restarted; SIGTERM stops the web server, flushes and acknowledges what each worker
holds, and stops the children.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from ..config import Config
from ..logs import get_logger
from .db import Database
from .ingest import make_worker

log = get_logger(__name__)


class _Workers:
    """The in-process worker thread and the child worker processes, restarted when they die."""

    def __init__(self, config: Config, db: Database, first_index: int, count: int, child_args: Sequence[str]) -> None:
        self.config, self.db = config, db
        self.index = first_index
        self.count = count
        self.child_args = list(child_args)
        self.worker: Any = None
        self.children: dict[int, subprocess.Popen[bytes]] = {}
        self.stop = threading.Event()

    def start(self) -> None:
        if self.count >= 1:
            self.worker = make_worker(self.config, self.db, self.index)
            self.worker.start()
        for k in range(1, self.count):
            self._spawn(self.index + k)
        threading.Thread(target=self._watch, name="edgeface-server-watch", daemon=True).start()

    def _spawn(self, k: int) -> None:
        args = [
            sys.executable,
            "-m",
            "edgeface",
            *self.child_args,
            "server",
            "run",
            "--no-web",
            "--ingest-workers",
            "1",
            "--worker-index",
            str(k),
        ]
        self.children[k] = subprocess.Popen(args)
        log.info("server.worker.started", index=k, pid=self.children[k].pid)

    def _watch(self) -> None:
        while not self.stop.wait(2.0):
            if self.worker is not None and self.worker.error is not None:
                log.error("server.worker.restart", index=self.index, error=str(self.worker.error))
                self.worker = make_worker(self.config, self.db, self.index)
                self.worker.start()
            for k, p in list(self.children.items()):
                if p.poll() is not None and not self.stop.is_set():
                    log.error("server.worker.exited", index=k, code=p.returncode, action="restarting")
                    self._spawn(k)

    def close(self) -> None:
        self.stop.set()
        for p in self.children.values():
            if p.poll() is None:
                p.terminate()
        if self.worker is not None:
            self.worker.stop()
        for p in self.children.values():
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()


def run_server(
    config: Config,
    *,
    web: bool = True,
    ingest_workers: int | None = None,
    worker_index: int = 0,
    child_args: Sequence[str] = (),
) -> None:
    """Run until SIGTERM or SIGINT."""
    if web:
        _check_public_url(config)
        from .embedders import fleet_cards

        fleet_cards(config)  # server.embedders names embedder cards there are (ConfigError naming it)
    db = Database(config.server.database_url)
    db.migrate()
    n = config.server.ingest_workers if ingest_workers is None else ingest_workers
    if n and not config.mqtt.host:
        log.warning(
            "server.no_broker",
            hint="set mqtt.host (and the server's TLS files) to receive results; running without ingest workers",
        )
        n = 0
    workers = _Workers(config, db, worker_index, n, child_args)
    stop = threading.Event()
    server: Any = None

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()
        if server is not None:
            server.close()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    workers.start()
    replies: Any = None
    if web and config.mqtt.host:  # units' replies to signed commands (edgeface.server.commands)
        from .commands import ReplyListener

        replies = ReplyListener(config, db)
        replies.start()
    try:
        if web:
            from waitress import create_server

            from .app import create_app

            app = create_app(config, db=db, migrate=False)
            server = create_server(
                app, host=config.server.host, port=config.server.port, threads=config.server.threads, ident="edgeface"
            )
            log.info("server.listening", url=f"http://{config.server.host}:{server.effective_port}/", ingest_workers=n)
            try:
                server.run()
            except OSError:  # the listening socket was closed by on_signal
                if not stop.is_set():
                    raise
        else:
            while not stop.wait(1.0):
                pass
    finally:
        if replies is not None:
            replies.stop()
        workers.close()
        db.dispose()
        log.info("server.stopped")


def _check_public_url(config: Config) -> None:
    """A malformed ``server.public_url`` stops the start; an empty one only disables publishing (said once)."""
    from .services import bundles_url

    if not config.server.public_url.strip():
        log.warning(
            "server.no_public_url",
            hint="set server.public_url to the URL units reach this server at; "
            "publishing a gallery is refused until then",
        )
        return
    bundles_url(config)  # raises ConfigError naming the setting


def wait_port(host: str, port: int, timeout: float = 30.0) -> bool:
    """True once something accepts connections on host:port (for tests and scripts)."""
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False
