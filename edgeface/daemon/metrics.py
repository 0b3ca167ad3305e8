"""The daemon's counters and gauges, their one-minute rates, the error log, and the Prometheus text format.

One :class:`Metrics` object per daemon; every stage updates it (thread-safe), the status writer
samples it, and the loopback HTTP endpoint renders it. Errors are counted from the log itself: every
record at level ERROR from any logger goes into a bounded ring, so "errors in the last hour" is
exactly what the log says.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

# name -> (type, help). Every metric the daemon exports is declared here.
METRICS: dict[str, tuple[str, str]] = {
    "edgeface_up": ("gauge", "1 while the daemon runs."),
    "edgeface_start_time_seconds": ("gauge", "Unix time the daemon started."),
    "edgeface_frames_captured_total": ("counter", "Frames taken from the source."),
    "edgeface_frames_dropped_total": ("counter", "Live frames dropped because the pipeline was behind."),
    "edgeface_frames_processed_total": ("counter", "Frames fully processed (results stored)."),
    "edgeface_frames_unreadable_total": ("counter", "Files that could not be decoded as images."),
    "edgeface_frames_failed_total": ("counter", "Frames given up after crashing a stage run.max_attempts times."),
    "edgeface_faces_total": ("counter", "Faces detected, by quality verdict."),
    "edgeface_results_total": ("counter", "Results stored in the outbox, by decision."),
    "edgeface_faces_merged_total": ("counter", "Faces folded into another face's result by track/dedup."),
    "edgeface_tracks_fused_total": (
        "counter",
        "Tracks whose result was matched on the fused template of 2 or more faces (see daemon/fusion.py).",
    ),
    "edgeface_results_not_stored_total": ("counter", "Results that could not be stored (outbox full at shutdown)."),
    "edgeface_stage_restarts_total": ("counter", "Pipeline stage threads restarted after a crash."),
    "edgeface_capture_up": ("gauge", "1 while the capture source is open."),
    "edgeface_capture_reopens_total": ("counter", "Times the capture source was lost and reopened."),
    "edgeface_queue_depth": ("gauge", "Items waiting in a pipeline queue."),
    "edgeface_frames_per_second": ("gauge", "Frames processed per second over the last minute."),
    "edgeface_faces_per_second": ("gauge", "Faces detected per second over the last minute."),
    "edgeface_outbox_pending": ("gauge", "Results waiting in the outbox."),
    "edgeface_outbox_bytes": ("gauge", "Payload bytes waiting in the outbox."),
    "edgeface_outbox_oldest_age_seconds": ("gauge", "Age of the oldest result waiting."),
    "edgeface_gallery_version": ("gauge", "Installed gallery version (0: none)."),
    "edgeface_gallery_age_seconds": ("gauge", "Seconds since the installed gallery was built."),
    "edgeface_mqtt_connected": ("gauge", "1 while connected to the broker."),
    "edgeface_mqtt_last_connected_timestamp_seconds": ("gauge", "Unix time the unit was last connected."),
    "edgeface_log_errors_total": ("counter", "Log records at level error."),
    "edgeface_errors_last_hour": ("gauge", "Log records at level error in the last hour."),
    "edgeface_disk_free_bytes": ("gauge", "Free bytes on the file system of run.state_dir."),
    "edgeface_disk_used_bytes": ("gauge", "Bytes used by edgeface's own files, by kind."),
    "edgeface_media_saved_total": ("counter", "Crops or frames saved by retention."),
    "edgeface_media_not_saved_total": ("counter", "Images not saved because retention.max_bytes was reached."),
    "edgeface_media_deleted_total": ("counter", "Saved images and imported photos deleted by retention."),
    "edgeface_process_resident_memory_bytes": ("gauge", "Resident set size of the daemon."),
    "edgeface_process_cpu_seconds_total": ("counter", "CPU time used by the daemon (user + system)."),
}

Labels = tuple[tuple[str, str], ...]


def _key(labels: dict[str, Any]) -> Labels:
    return tuple(sorted((k, str(v)) for k, v in labels.items()))


class ErrorLog(logging.Handler):
    """Remembers ERROR records (time, event, message) in a bounded ring."""

    def __init__(self, keep: int = 2000) -> None:
        super().__init__(level=logging.ERROR)
        self.records: deque[tuple[float, str, str]] = deque(maxlen=keep)
        self.total = 0

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "edgeface_fields", {}) or {}
        detail = fields.get("error") or fields.get("hint") or ""
        self.records.append((record.created, record.getMessage(), str(detail)[:300]))
        self.total += 1

    def last_hour(self, now: float | None = None) -> int:
        cutoff = (now or time.time()) - 3600
        return sum(1 for t, _, _ in list(self.records) if t >= cutoff)

    def recent(self, n: int = 5) -> list[dict[str, Any]]:
        return [{"ts": round(t, 3), "event": e, "detail": d} for t, e, d in list(self.records)[-n:]]


class Metrics:
    """Thread-safe counters and gauges keyed by name and labels, plus rates and the error log."""

    RATE_WINDOW_S = 60.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, dict[Labels, float]] = {}
        self._samples: deque[tuple[float, float, float]] = deque()  # (monotonic, frames, faces)
        self.errors = ErrorLog()

    def inc(self, name: str, n: float = 1, **labels: Any) -> None:
        with self._lock:
            series = self._values.setdefault(name, {})
            k = _key(labels)
            series[k] = series.get(k, 0.0) + n

    def set(self, name: str, value: float, **labels: Any) -> None:
        with self._lock:
            self._values.setdefault(name, {})[_key(labels)] = float(value)

    def get(self, name: str, **labels: Any) -> float:
        with self._lock:
            return self._values.get(name, {}).get(_key(labels), 0.0)

    def total(self, name: str) -> float:
        """Sum over every label set."""
        with self._lock:
            return sum(self._values.get(name, {}).values())

    def by_label(self, name: str, label: str) -> dict[str, float]:
        with self._lock:
            out: dict[str, float] = {}
            for k, v in self._values.get(name, {}).items():
                lv = dict(k).get(label, "")
                out[lv] = out.get(lv, 0.0) + v
        return out

    def sample_rates(self, now: float | None = None) -> tuple[float, float]:
        """Record the counters now; returns (frames/s, faces/s) over the last minute."""
        now = time.monotonic() if now is None else now
        frames, faces = self.total("edgeface_frames_processed_total"), self.total("edgeface_faces_total")
        with self._lock:
            self._samples.append((now, frames, faces))
            while len(self._samples) > 2 and now - self._samples[1][0] >= self.RATE_WINDOW_S:
                self._samples.popleft()
            t0, f0, c0 = self._samples[0]
        span = now - t0
        if span <= 0:
            return 0.0, 0.0
        fps, cps = (frames - f0) / span, (faces - c0) / span
        self.set("edgeface_frames_per_second", round(fps, 3))
        self.set("edgeface_faces_per_second", round(cps, 3))
        return fps, cps

    def render(self) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        self.set("edgeface_log_errors_total", self.errors.total)
        self.set("edgeface_errors_last_hour", self.errors.last_hour())
        with self._lock:
            snapshot = {k: dict(v) for k, v in self._values.items()}
        lines = []
        for name, (kind, text) in METRICS.items():
            series = snapshot.get(name)
            if not series:
                if kind == "counter":
                    series = {(): 0.0}
                else:
                    continue
            lines.append(f"# HELP {name} {text}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, value in sorted(series.items()):
                lab = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                lines.append(f"{name}{{{lab}}} {_number(value)}" if lab else f"{name} {_number(value)}")
        return "\n".join(lines) + "\n"


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 2**53 else repr(float(v))
