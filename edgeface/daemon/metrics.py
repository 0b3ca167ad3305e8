"""The daemon's metrics (exported with ``prometheus_client``), its one-minute rates, and the error log.

One :class:`Metrics` object per daemon, each with its own ``CollectorRegistry`` (never the global one,
so tests and several daemons in one process do not share series). Every stage updates it (thread-safe),
the status writer samples it, and the loopback HTTP endpoint renders it in the Prometheus text format.

Exported by the rules of the ecosystem: counts are counters (``*_total``: a scraper takes the rate),
stage latencies are histograms (``edgeface_stage_duration_seconds{stage}``), ``edgeface_build_info``
says what runs, and ``process_*`` are the standard process metrics. The one-minute rates and the errors
of the last hour are figures of the status document only. Errors are counted from the log itself:
every record at level ERROR from any logger goes into a bounded ring.
"""

from __future__ import annotations

import logging
import platform
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from .. import __version__

# name -> (type, help, label names). Every counter and gauge the daemon exports is declared here.
METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "edgeface_up": ("gauge", "1 while the daemon runs.", ()),
    "edgeface_start_time_seconds": ("gauge", "Unix time the daemon started.", ()),
    "edgeface_frames_captured_total": ("counter", "Frames taken from the source.", ("source",)),
    "edgeface_frames_dropped_total": ("counter", "Live frames dropped because the pipeline was behind.", ()),
    "edgeface_frames_processed_total": ("counter", "Frames fully processed (results stored).", ()),
    "edgeface_frames_unreadable_total": ("counter", "Files that could not be decoded as images.", ()),
    "edgeface_frames_failed_total": (
        "counter",
        "Frames given up after crashing a stage run.max_attempts times.",
        (),
    ),
    "edgeface_faces_total": ("counter", "Faces detected, by quality verdict.", ("verdict",)),
    "edgeface_results_total": ("counter", "Results stored in the outbox, by decision.", ("decision",)),
    "edgeface_faces_merged_total": ("counter", "Faces folded into another face's result by track/dedup.", ()),
    "edgeface_tracks_fused_total": (
        "counter",
        "Tracks whose result was matched on the fused template of 2 or more faces (see daemon/fusion.py).",
        (),
    ),
    "edgeface_results_not_stored_total": (
        "counter",
        "Results that could not be stored (outbox full at shutdown).",
        (),
    ),
    "edgeface_stage_restarts_total": ("counter", "Pipeline stage threads restarted after a crash.", ("stage",)),
    "edgeface_capture_up": ("gauge", "1 while the capture source is open.", ()),
    "edgeface_capture_reopens_total": ("counter", "Times the capture source was lost and reopened.", ()),
    "edgeface_queue_depth": ("gauge", "Items waiting in a pipeline queue.", ("queue",)),
    "edgeface_outbox_pending": ("gauge", "Results waiting in the outbox.", ()),
    "edgeface_outbox_bytes": ("gauge", "Payload bytes waiting in the outbox.", ()),
    "edgeface_outbox_oldest_age_seconds": ("gauge", "Age of the oldest result waiting.", ()),
    "edgeface_gallery_version": ("gauge", "Installed gallery version (0: none).", ()),
    "edgeface_gallery_age_seconds": ("gauge", "Seconds since the installed gallery was built.", ()),
    "edgeface_mqtt_connected": ("gauge", "1 while connected to the broker.", ()),
    "edgeface_mqtt_last_connected_timestamp_seconds": ("gauge", "Unix time the unit was last connected.", ()),
    "edgeface_log_errors_total": ("counter", "Log records at level error.", ()),
    "edgeface_disk_free_bytes": ("gauge", "Free bytes on the file system of run.state_dir.", ()),
    "edgeface_disk_used_bytes": ("gauge", "Bytes used by edgeface's own files, by kind.", ("kind",)),
    "edgeface_media_saved_total": ("counter", "Crops or frames saved by retention.", ("kind",)),
    "edgeface_media_not_saved_total": (
        "counter",
        "Images not saved because retention.max_bytes was reached.",
        (),
    ),
    "edgeface_media_deleted_total": (
        "counter",
        "Saved images and imported photos deleted by retention.",
        ("kind",),
    ),
}

# The stages timed into edgeface_stage_duration_seconds{stage} (docs/field-unit.md says where each is cut).
STAGES = ("capture", "detect", "quality", "align", "embed", "match", "outbox_enqueue")
# From 1 ms (a gallery search) to 10 s (a detector on a loaded Pi Zero): seconds.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

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
    """Thread-safe counters and gauges keyed by name and labels, stage histograms, rates and the error log.

    ``inc`` and ``set`` take a name declared in :data:`METRICS` (a counter only goes up: ``set`` refuses
    it); ``observe``/``timed`` feed ``edgeface_stage_duration_seconds``; ``render`` is the text format.
    """

    RATE_WINDOW_S = 60.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, dict[Labels, float]] = {}
        self._samples: deque[tuple[float, float, float]] = deque()  # (monotonic, frames, faces)
        self.errors = ErrorLog()
        self.registry = CollectorRegistry(auto_describe=True)
        self.stage_seconds = Histogram(
            "edgeface_stage_duration_seconds",
            "Seconds one pipeline stage took, by stage (detect: per frame; quality and align: per face; "
            "embed: per frame's batch; match: per search; capture: reading or decoding one frame).",
            ["stage"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        for stage in STAGES:  # every stage's series exists from the start (count 0), not from its first frame
            self.stage_seconds.labels(stage=stage)
        self.registry.register(_Store(self))
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, process_resident_memory_bytes, ...

    # -- counters and gauges ----------------------------------------------------------------------------

    def inc(self, name: str, n: float = 1, **labels: Any) -> None:
        if n < 0:
            raise ValueError(f"{name}: a counter only goes up (inc by {n})")
        with self._lock:
            series = self._values.setdefault(name, {})
            k = _key(labels)
            series[k] = series.get(k, 0.0) + n

    def set(self, name: str, value: float, **labels: Any) -> None:
        if METRICS.get(name, ("gauge",))[0] == "counter":
            raise ValueError(f"{name} is a counter: use inc(), a counter is never set")
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

    def snapshot(self) -> dict[str, dict[Labels, float]]:
        with self._lock:
            return {k: dict(v) for k, v in self._values.items()}

    # -- stage latency ----------------------------------------------------------------------------------

    def observe(self, stage: str, seconds: float) -> None:
        """One duration of ``stage`` (one of :data:`STAGES`) into the histogram."""
        self.stage_seconds.labels(stage=stage).observe(seconds)

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Time the block into ``stage`` (also when it raises: a slow failure is still slow)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.observe(stage, time.perf_counter() - t0)

    # -- rates (status document only) -------------------------------------------------------------------

    def sample_rates(self, now: float | None = None) -> tuple[float, float]:
        """Record the counters now; returns (frames/s, faces/s) over the last minute. Not exported: a
        scraper takes ``rate()`` of the counters over the window it wants."""
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
        return (frames - f0) / span, (faces - c0) / span

    def render(self) -> str:
        """The Prometheus text exposition format (version 0.0.4) of this daemon's registry."""
        return generate_latest(self.registry).decode()


class _Store(Collector):
    """Exports :class:`Metrics`' counters and gauges (and build_info) at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        m = self.metrics
        snapshot = m.snapshot()
        snapshot["edgeface_log_errors_total"] = {(): float(m.errors.total)}
        info = InfoMetricFamily("edgeface_build", "The running edgeface: version and Python.")
        info.add_metric([], {"version": __version__, "python_version": platform.python_version()})
        yield info
        for name, (kind, text, label_names) in METRICS.items():
            series = snapshot.get(name)
            if not series and (kind != "counter" or label_names):
                continue  # a gauge not measured yet; a labelled counter appears with its first label set
            family: CounterMetricFamily | GaugeMetricFamily
            if kind == "counter":
                family = CounterMetricFamily(name, text, labels=label_names)
            else:
                family = GaugeMetricFamily(name, text, labels=label_names)
            for labels, value in sorted((series or {(): 0.0}).items()):
                d = dict(labels)
                family.add_metric([d.get(n, "") for n in label_names], value)
            yield family
