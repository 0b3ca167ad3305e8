"""The loopback HTTP endpoint: ``GET /metrics`` (Prometheus text) and ``GET /status`` (the status JSON).

It has no authentication, so it only ever listens on a loopback address; a collector on the unit
(node exporter's textfile, Grafana Agent, an SSH tunnel) reaches it there.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..errors import ConfigError
from ..logs import get_logger

log = get_logger(__name__)


def check_loopback(host: str) -> None:
    """Refuse any address but loopback (``status.metrics_host``)."""
    if host == "localhost":
        return
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError(
            f"status.metrics_host = {host!r} is not a loopback address (127.0.0.1 or ::1): the "
            "metrics endpoint has no authentication; scrape it through a local agent or a tunnel"
        )


class MetricsServer:
    """Serves ``render_metrics()`` and ``status()`` in a background thread."""

    def __init__(
        self, host: str, port: int, render_metrics: Callable[[], str], status: Callable[[], dict[str, Any]]
    ) -> None:
        check_loopback(host)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    body, ctype = render_metrics().encode(), "text/plain; version=0.0.4; charset=utf-8"
                elif path == "/status":
                    body, ctype = json.dumps(status(), default=str).encode(), "application/json"
                else:
                    self.send_error(404, "try /metrics or /status")
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("metrics.request", line=format % args)

        bind = host.strip("[]")

        class Server(ThreadingHTTPServer):
            address_family = socket.AF_INET6 if ":" in bind else socket.AF_INET
            daemon_threads = True

        try:
            self.server = Server((bind, port), Handler)
        except OSError as e:
            raise ConfigError(
                f"status.metrics_port = {port}: cannot listen on {host}:{port} ({e.strerror or e}); "
                "choose another port, or 0 to turn the endpoint off"
            ) from e
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, name="edgeface-metrics", daemon=True)

    def start(self) -> None:
        self._thread.start()
        host = self.server.server_address[0]
        host = host.decode() if isinstance(host, bytes) else host
        log.info("metrics.listening", url=f"http://{host}:{self.port}/metrics")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
