"""The running daemon's status: gauges refreshed and the status document built from typed parts.

Every ``status.interval_s`` (and once more at the end, as 'stopped') the daemon takes
:class:`StatusParts` of itself; :func:`read_figures` reads what costs I/O once (outbox, gallery, disk,
process), :func:`update_gauges` sets the metrics from them and :func:`status_document` builds the
document that ``/status`` serves and :class:`StatusBoard` writes to ``<run.state_dir>/status.json``
(read by ``edgeface status``: :mod:`edgeface.daemon.status`).
"""

from __future__ import annotations

import os
import queue
import resource
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..errors import EdgefaceError
from ..logs import get_logger
from . import status as status_mod
from .metrics import Metrics
from .stages import Stage
from .summary import Summary

if TYPE_CHECKING:
    from ..capture import Source
    from ..config import Config
    from ..mqtt import Publisher
    from ..outbox import Outbox
    from .retention import Retention

log = get_logger(__name__)


@dataclass(frozen=True)
class StatusParts:
    """What the status is made of, taken from the running daemon at one moment."""

    config: Config
    device_id: str
    started_at: float  # Unix time
    source: Source
    queues: Mapping[str, queue.Queue[Any]]  # the pipeline's queues by name
    stages: Sequence[Stage[Any, Any]]
    capture_restarts: int
    outbox: Outbox
    publisher: Publisher | None  # None: mqtt.host is empty
    retention: Retention
    summary: Summary  # a copy (Tally.snapshot)


@dataclass(frozen=True)
class Figures:
    """What one refresh read from disk and the process (each read once, for the gauges and the document)."""

    frames_per_s: float
    faces_per_s: float
    outbox: dict[str, Any]  # Outbox.stats(), or {"error": ...}
    gallery: dict[str, Any]  # status.gallery_info()
    disk: dict[str, Any]  # status.disk_info()
    connected: bool
    last_connected_at: float | None
    cpu_s: float
    rss_bytes: int


def read_figures(parts: StatusParts, metrics: Metrics, last_connected_at: float | None) -> Figures:
    fps, cps = metrics.sample_rates()
    try:
        ob = parts.outbox.stats().as_dict()
    except EdgefaceError as e:
        ob = {"error": str(e)}
    pub = parts.publisher
    connected = bool(pub is not None and pub.stats.connected)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return Figures(
        frames_per_s=fps,
        faces_per_s=cps,
        outbox=ob,
        gallery=status_mod.gallery_info(parts.config),
        disk=status_mod.disk_info(parts.config),
        connected=connected,
        last_connected_at=time.time() if connected else last_connected_at,
        cpu_s=round(ru.ru_utime + ru.ru_stime, 3),
        rss_bytes=rss_bytes(),
    )


def update_gauges(metrics: Metrics, parts: StatusParts, f: Figures, state: str) -> None:
    m = metrics
    for name, q in parts.queues.items():
        m.set("edgeface_queue_depth", q.qsize(), queue=name)
    m.set("edgeface_outbox_pending", f.outbox.get("pending", 0))
    m.set("edgeface_outbox_bytes", f.outbox.get("bytes", 0))
    m.set("edgeface_outbox_oldest_age_seconds", f.outbox.get("oldest_age_s") or 0)
    m.set("edgeface_gallery_version", f.gallery.get("version", 0))
    if f.gallery.get("age_s") is not None:
        m.set("edgeface_gallery_age_seconds", f.gallery["age_s"])
    m.set("edgeface_mqtt_connected", int(f.connected))
    if f.last_connected_at:
        m.set("edgeface_mqtt_last_connected_timestamp_seconds", f.last_connected_at)
    m.set("edgeface_disk_free_bytes", f.disk["free_bytes"])
    for k, v in f.disk["edgeface_bytes"].items():
        m.set("edgeface_disk_used_bytes", v, kind=k)
    m.set("edgeface_up", 1 if state != "stopped" else 0)
    m.set("edgeface_start_time_seconds", round(parts.started_at, 3))


def status_document(parts: StatusParts, f: Figures, metrics: Metrics, state: str) -> dict[str, Any]:
    """The status document (``state``: 'running' or 'stopped'); see docs/field-unit.md for its fields."""
    cfg, m, pub = parts.config, metrics, parts.publisher
    link: dict[str, Any] = {
        "configured": bool(cfg.mqtt.host),
        "host": cfg.mqtt.host,
        "connected": f.connected,
        "last_connected_at": f.last_connected_at,
    }
    if pub is not None:
        link.update(
            last_error=pub.stats.last_error,
            reconnects=max(0, pub.stats.connects - 1),
            published=pub.stats.published,
            acked=pub.stats.acked,
        )
    return {
        "state": state,
        "pid": os.getpid(),
        "device_id": parts.device_id,
        "version": __version__,
        "started_at": round(parts.started_at, 3),
        "updated_at": round(time.time(), 3),
        "interval_s": cfg.status.interval_s,
        "source": {
            **parts.source.describe(),
            "up": bool(m.get("edgeface_capture_up")),
            "reopens": int(m.total("edgeface_capture_reopens_total")),
        },
        "rates": {
            "frames_per_s": round(f.frames_per_s, 3),
            "faces_per_s": round(f.faces_per_s, 3),
            "window_s": m.RATE_WINDOW_S,
        },
        "counters": {
            "frames_captured": int(m.total("edgeface_frames_captured_total")),
            "frames_processed": int(m.total("edgeface_frames_processed_total")),
            "frames_dropped": int(m.total("edgeface_frames_dropped_total")),
            "frames_unreadable": int(m.total("edgeface_frames_unreadable_total")),
            "frames_failed": int(m.total("edgeface_frames_failed_total")),
            "faces": int(m.total("edgeface_faces_total")),
            "results": {k: int(v) for k, v in m.by_label("edgeface_results_total", "decision").items()},
            "faces_merged": int(m.total("edgeface_faces_merged_total")),
        },
        "gallery": f.gallery,
        "outbox": f.outbox,
        "link": link,
        "disk": f.disk,
        "errors": {"last_hour": m.errors.last_hour(), "total": m.errors.total, "recent": m.errors.recent()},
        "stages": {
            **{st.name: st.describe() for st in parts.stages},
            "capture": {"restarts": parts.capture_restarts},
        },
        "retention": {"save": cfg.retention.save, "held": parts.retention.pending()},
        "summary": parts.summary.as_dict() | {"recent": []},
    }


class StatusBoard:
    """The latest status document (served on ``/status``) and the status file it is written to."""

    def __init__(self, config: Config) -> None:
        self.path = status_mod.status_path(config)
        self.doc: dict[str, Any] = {}
        previous = status_mod.read_status(self.path) or {}
        self.last_connected_at: float | None = (previous.get("link") or {}).get("last_connected_at")

    def latest(self) -> dict[str, Any]:
        return self.doc

    def refresh(self, parts: StatusParts, metrics: Metrics, state: str = "running") -> dict[str, Any]:
        """Update the gauges and the status document (and file); returns the document."""
        figures = read_figures(parts, metrics, self.last_connected_at)
        self.last_connected_at = figures.last_connected_at
        update_gauges(metrics, parts, figures, state)
        self.doc = status_document(parts, figures, metrics, state)
        try:
            status_mod.write_status(self.path, self.doc)
        except OSError as e:
            log.warning("status.write_failed", error=str(e))
        return self.doc


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
