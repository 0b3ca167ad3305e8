"""The server's ``GET /metrics`` (Prometheus text format), for a scraper holding ``server.metrics_token``.

* ``edgeface_server_results_ingested_total{outcome}``: results the ingest worker(s) of this process
  received: stored, duplicate (already stored: dropped), rejected (malformed). A counter: the ingest
  rate is ``rate()`` of it.
* Read from the database at scrape time (a custom collector: one short read transaction per scrape, so
  every server process reports the same fleet): ``edgeface_server_review_backlog{status}`` (pending,
  awaiting_second), ``edgeface_server_devices{state}``, ``edgeface_server_devices_offline``,
  ``edgeface_server_devices_gallery_behind`` (a reported gallery older than the newest publication, as
  the fleet page marks it), ``edgeface_server_gallery_version``.
* ``edgeface_server_build_info`` and the standard ``process_*`` metrics.

Who may scrape: nobody until ``server.metrics_token`` is set (the route answers 404); then a request with
``Authorization: Bearer <token>`` (Prometheus ``authorization: {credentials_file: ...}``). Not the
client address: behind the TLS proxy every request comes from loopback.
"""

from __future__ import annotations

import hmac
import json
import platform
from collections.abc import Iterable
from typing import Any

from flask import Flask, Response, abort, current_app, g, request
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from .. import __version__
from ..config import Config
from ..errors import ConfigError
from ..logs import get_logger
from .access import PUBLIC, access
from .db import Database
from .services import services
from .tables import devices, publications, results

log = get_logger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MIN_TOKEN_CHARS = 32
BACKLOG = ("pending", "awaiting_second")
OUTCOMES = ("stored", "duplicate", "rejected")

# One per process, like the ingest worker that counts into it (DbResultStore); each app's registry
# exports it. Child ingest workers (server.ingest_workers > 1) count in their own processes.
INGESTED = Counter(
    "edgeface_server_results_ingested",
    "Results received from units by the ingest worker(s) of this process, by outcome (stored, duplicate, rejected).",
    ["outcome"],
    registry=None,
)
for _outcome in OUTCOMES:
    INGESTED.labels(outcome=_outcome)


def count_ingested(outcome: str, n: int = 1) -> None:
    """Count ``n`` results ingested with ``outcome`` (one of :data:`OUTCOMES`)."""
    if n:
        INGESTED.labels(outcome=outcome).inc(n)


class FleetCollector(Collector):
    """Review backlog, devices and gallery versions, read from the database at each scrape."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterable[Metric]:
        with self.db.read() as conn:
            backlog: dict[str, int] = dict(
                conn.execute(
                    select(results.c.review_status, func.count())
                    .where(results.c.review_status.in_(BACKLOG))
                    .group_by(results.c.review_status)
                ).all()
            )
            latest = conn.execute(select(func.max(publications.c.version))).scalar()
            rows = conn.execute(select(devices.c.state, devices.c.status)).all()
        g_backlog = GaugeMetricFamily(
            "edgeface_server_review_backlog", "Results waiting for a reviewer, by review status.", labels=["status"]
        )
        for status in BACKLOG:
            g_backlog.add_metric([status], float(backlog.get(status, 0)))
        yield g_backlog
        states: dict[str, int] = {}
        behind = 0
        for state, status in rows:
            states[state or "unknown"] = states.get(state or "unknown", 0) + 1
            version = _reported_gallery(status)
            if latest is not None and version is not None and version < latest:
                behind += 1
        g_devices = GaugeMetricFamily(
            "edgeface_server_devices", "Known devices, by their last reported state.", labels=["state"]
        )
        for state in sorted({"online", "offline", *states}):
            g_devices.add_metric([state], float(states.get(state, 0)))
        yield g_devices
        yield GaugeMetricFamily(
            "edgeface_server_devices_offline",
            "Devices whose last word is 'offline' (their last will, or a clean stop).",
            value=float(states.get("offline", 0)),
        )
        yield GaugeMetricFamily(
            "edgeface_server_devices_gallery_behind",
            "Devices reporting a gallery version older than the newest published one.",
            value=float(behind),
        )
        yield GaugeMetricFamily(
            "edgeface_server_gallery_version",
            "Newest published gallery version (0: none).",
            value=float(latest or 0),
        )


def _reported_gallery(status: str | None) -> int | None:
    try:
        v = json.loads(status).get("gallery_version") if status else None
    except (ValueError, AttributeError):
        return None
    return v if isinstance(v, int) else None


class _Build(Collector):
    def collect(self) -> Iterable[Metric]:
        info = InfoMetricFamily("edgeface_server_build", "The running edgeface server: version and Python.")
        info.add_metric([], {"version": __version__, "python_version": platform.python_version()})
        yield info


def make_registry(db: Database) -> CollectorRegistry:
    """A registry of its own for one app (never the global one)."""
    registry = CollectorRegistry()
    registry.register(_Build())
    registry.register(INGESTED)
    registry.register(FleetCollector(db))
    ProcessCollector(registry=registry)
    return registry


def install(app: Flask, config: Config, db: Database) -> None:
    """Add ``GET /metrics`` to ``app``; refuses a ``server.metrics_token`` too short to be a secret."""
    token = config.server.metrics_token
    if token and len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(
            f"server.metrics_token has {len(token)} characters: use at least {MIN_TOKEN_CHARS} random ones "
            "(e.g. `openssl rand -hex 32`), or leave it empty to turn /metrics off"
        )
    app.extensions["edgeface_metrics"] = make_registry(db)
    app.add_url_rule("/metrics", "metrics", view)


@access(PUBLIC)
def view() -> Any:
    """The metrics, for ``Authorization: Bearer <server.metrics_token>`` only."""
    g.pre_csrf = None  # no login cookie for a scraper
    token = services().config.server.metrics_token
    if not token:
        abort(404)
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        log.warning("server.metrics_refused", ip=(request.remote_addr or "unknown")[:64])
        return Response(
            "a bearer token (server.metrics_token) is required\n",
            401,
            {"WWW-Authenticate": 'Bearer realm="edgeface metrics"', "Content-Type": "text/plain"},
        )
    body = generate_latest(current_app.extensions["edgeface_metrics"])
    return Response(body, 200, {"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})
