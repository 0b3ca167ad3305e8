"""The field unit's daemon: capture -> infer -> match -> track/dedup -> outbox -> publisher.

::

  capture ──frames (bounded)──> infer x run.workers ──faces──> match ──faces──> sink ──put──> outbox ──> publisher
  source     live: drop oldest    detect, quality gate,          gallery    track/dedup,       SQLite     MQTT thread
  backoff    files: wait          align, embed (own Engine)      (reopen    result payload,    durable    (never blocks
                                                                  on sync)   retention, ledger              the pipeline)

* Capture never waits on the network: the only thing downstream of the pipeline is the local outbox;
  the publisher drains it in its own thread. Live frames are dropped (counted) when inference is
  behind; files wait, because they must not be missed.
* Each stage is a :class:`~edgeface.daemon.stages.Stage`: a crashed thread is restarted and the frame
  it held is retried (then recorded as failed). A camera that disappears is reopened with backoff.
* A frame is complete when every face's result is in the outbox; only then does the source record it
  (the folder's ledger), so a kill -9 at any point loses nothing that a restart does not redo.
* SIGTERM: capture stops, every queued frame is processed, open tracks are emitted, the publisher
  gets the rest of ``run.drain_timeout_s`` to deliver, and the process exits 0.
* Under systemd: READY=1 once running, WATCHDOG=1 while every stage makes progress, STOPPING=1.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import resource
import signal
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from .. import __version__
from ..capture import EndOfSource, Frame, Source, TriggerHub, make_source
from ..capture.triggers import install as install_triggers
from ..config import Config
from ..errors import (
    CaptureError,
    EdgefaceError,
    GalleryError,
    ImageError,
    OutboxDiskFull,
    OutboxFull,
    SourceUnavailable,
)
from ..logs import get_logger
from ..mqtt.link import Backoff, device_id_from
from ..mqtt.queue import enqueue_result
from ..outbox import Outbox
from ..vision.engine import Engine
from . import status as status_mod
from .dedup import Track, Tracker
from .endpoint import MetricsServer
from .metrics import Metrics
from .results import build_result, face_crop, source_label
from .retention import Retention
from .sdnotify import Notifier
from .stages import Stage
from .work import FrameFaces, FrameJob, Observation

log = get_logger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


@dataclasses.dataclass
class Summary:
    """What a run did (printed by ``edgeface run`` at exit, used by tests and the e2e benchmark)."""

    frames: int = 0
    faces: int = 0
    results: dict[str, int] = dataclasses.field(default_factory=dict)
    merged: int = 0
    unreadable: int = 0
    failed: int = 0
    dropped: int = 0
    not_stored: int = 0
    stage_restarts: int = 0
    capture_reopens: int = 0
    outbox_pending: int = 0
    recent: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class GalleryHolder:
    """The gallery the match stage uses; reopened there (one thread) after a sync installed a new one."""

    def __init__(self, config: Config, engine_threshold: float) -> None:
        self.config = config
        self.engine_threshold = engine_threshold
        self.store: Any = None
        self.gallery: Any = None
        self.changed = threading.Event()
        self.changed.set()  # open at first use
        self.error = ""

    def current(self) -> Any:
        if self.changed.is_set():
            self.changed.clear()
            self._reopen()
        return self.gallery

    def _reopen(self) -> None:
        from ..gallery.store import GalleryStore

        old = self.gallery
        try:
            if self.store is None:
                self.store = GalleryStore.from_config(self.config)
            self.gallery = self.store.open()
            self.error = ""
        except (GalleryError, OSError) as e:
            self.error = str(e)
            log.error("gallery.unusable", error=str(e), dir=str(self.config.gallery.dir),
                      hint="results are stored without candidates until a valid gallery is installed "
                           "(edgeface gallery sync / inspect)")
            self.gallery = None
        if old is not None and old is not self.gallery:
            old.close()
        if self.gallery is None and not self.error:
            log.warning("gallery.none_installed", dir=str(self.config.gallery.dir),
                        hint="faces are compared with nobody until a gallery is synced (gallery.sync_url)")
        elif self.gallery is not None:
            log.info("gallery.in_use", version=self.gallery.version, count=len(self.gallery))

    @property
    def version(self) -> int | None:
        g = self.gallery
        return g.version if g is not None else None

    def close(self) -> None:
        if self.gallery is not None:
            self.gallery.close()
            self.gallery = None


class Daemon:
    """One field unit's pipeline. ``run()`` blocks until the source ends, ``duration_s`` passed or a stop
    was requested (SIGTERM/SIGINT or :meth:`request_stop`), drains, and returns an exit code."""

    def __init__(self, config: Config, *, source: Source | None = None, duration_s: float | None = None,
                 install_signals: bool = True, on_result: Any = None) -> None:
        self.config = config
        self.metrics = Metrics()
        self.device_id = device_id_from(config.device.id)
        self.state_dir = Path(config.run.state_dir)
        self.source = source or make_source(config, self.state_dir)
        self.duration_s = duration_s
        self.install_signals = install_signals
        self.on_result = on_result
        self.notifier = Notifier()
        self.triggers = TriggerHub()
        self.stop_event = threading.Event()
        self.abandon = threading.Event()  # drain deadline passed: stop retrying, exit
        self.capture_done = threading.Event()
        self.fatal: BaseException | None = None
        self._capture_error: BaseException | None = None
        self.stop_reason = ""
        self.summary = Summary()
        self._recent: deque[dict[str, Any]] = deque(maxlen=200)
        self._lock = threading.Lock()  # summary counters from several threads
        rc = config.run
        self.frames: queue.Queue[FrameJob] = queue.Queue(rc.frame_queue)
        self.faces_q: queue.Queue[FrameFaces] = queue.Queue(rc.face_queue)
        self.matched_q: queue.Queue[FrameFaces] = queue.Queue(rc.face_queue)
        self.need_crop = config.mqtt.include_crop or config.retention.save == "crop"
        self.keep_frame = config.retention.save == "frame"
        self._capture_thread: threading.Thread | None = None
        self._capture_beat = time.monotonic()
        self._capture_restarts = 0
        self.publisher: Any = None
        self.syncer: Any = None
        self._sync_stop = threading.Event()
        self._sync_thread: threading.Thread | None = None
        self.endpoint: MetricsServer | None = None
        self.started_at = time.time()
        self._last_connected_at: float | None = None
        self._status_doc: dict[str, Any] = {}
        self._next_status = 0.0
        self._next_sweep = 0.0
        self._next_ping = 0.0
        self._watchdog_withheld = False
        self._previous_signals: dict[int, Any] = {}

    # ------------------------------------------------------------------------------------------------
    # start-up

    def _open_outbox(self) -> None:
        self.outbox = Outbox.from_config(self.config.outbox)

    def _setup(self) -> None:
        cfg = self.config
        self.state_dir.mkdir(parents=True, exist_ok=True)
        probe = Engine(cfg)
        card = probe.embedder_card
        spec = card.embedder
        assert spec is not None
        self.model_id = card.id
        self.engine_threshold = float(spec.thresholds.get("cosine", 0.0)) if spec.thresholds else 0.0
        self._open_outbox()
        self.retention = Retention(cfg, self.outbox, self.metrics)
        self.retention.remove_orphans()
        self.gallery = GalleryHolder(cfg, self.engine_threshold)
        self.gallery.current()  # open now: its errors belong in the start-up log
        threshold = cfg.gallery.threshold
        if threshold is None and self.gallery.gallery is not None:
            threshold = self.gallery.gallery.manifest.threshold
        similarity = cfg.dedup.similarity if cfg.dedup.similarity is not None else (threshold or self.engine_threshold)
        self.tracker = Tracker(cfg.dedup.window_s, similarity, cfg.dedup.iou)
        previous = status_mod.read_status(status_mod.status_path(cfg)) or {}
        self._last_connected_at = (previous.get("link") or {}).get("last_connected_at")
        self.infer = Stage("infer", self.frames, self._infer, threads=cfg.run.workers, setup=lambda: Engine(cfg),
                           attempts=lambda j: j.frame.attempts, bump=self._bump, give_up=self._give_up_frame,
                           max_attempts=cfg.run.max_attempts, metrics=self.metrics)
        self.match = Stage("match", self.faces_q, self._match, attempts=lambda ff: ff.job.frame.attempts,
                           bump=lambda ff: self._bump(ff.job), give_up=self._give_up_faces,
                           max_attempts=cfg.run.max_attempts, metrics=self.metrics)
        self.sink = Stage("sink", self.matched_q, self._sink, idle=self._sink_idle,
                          attempts=lambda ff: ff.job.frame.attempts, bump=lambda ff: self._bump(ff.job),
                          give_up=self._give_up_faces_at_sink, max_attempts=cfg.run.max_attempts, metrics=self.metrics)
        self.stages = [self.infer, self.match, self.sink]

    def _start_network(self) -> None:
        cfg = self.config
        if cfg.mqtt.host:
            from ..mqtt import Publisher

            self.publisher = Publisher.from_config(cfg, self.outbox, gallery_version=lambda: self.gallery.version,
                                                   model_id=self.model_id, on_command=self._on_command,
                                                   on_announce=self._on_announce)
            self.publisher.start()
        else:
            log.info("mqtt.off", hint="mqtt.host is empty: results wait in the outbox (edgeface outbox drain)")
        if cfg.gallery.sync_url:
            from ..gallery.sync import Syncer
            from ..gallery.transport import auth_headers

            g = cfg.gallery
            store = self.gallery.store
            if store is None:
                from ..gallery.store import GalleryStore

                store = self.gallery.store = GalleryStore.from_config(cfg)
            headers = auth_headers(g.sync_username or self.device_id, g.sync_password_file) \
                if g.sync_password_file else {}
            self.syncer = Syncer(store, g.sync_url, interval_s=g.sync_interval_s, timeout=g.sync_timeout_s,
                                 ca_file=g.sync_ca_file, max_bytes=g.sync_max_bytes,
                                 on_installed=lambda v: self.gallery.changed.set(), headers=headers,
                                 allow_insecure_http=g.allow_insecure_http)
            self._sync_thread = threading.Thread(target=self._sync_loop, name="edgeface-sync", daemon=True)
            self._sync_thread.start()
        if cfg.status.metrics_port:
            self.endpoint = MetricsServer(cfg.status.metrics_host, cfg.status.metrics_port, self.render_metrics,
                                          lambda: self._status_doc)
            self.endpoint.start()

    def _sync_loop(self) -> None:
        assert self.syncer is not None
        try:
            self.syncer.run(self._sync_stop)
        except Exception as e:  # the sync thread must not take the unit down; logged, retried by the supervisor
            log.exception("gallery.sync.crashed", error=str(e))

    def _on_command(self, doc: dict[str, Any]) -> None:
        if doc["command"] == "capture" and "command" in self.config.capture.triggers:
            self.triggers.fire("command")
        elif doc["command"] == "sync_gallery" and self.syncer is not None:
            self.syncer.trigger()

    def _on_announce(self, doc: dict[str, Any]) -> None:
        if self.syncer is not None:
            self.syncer.trigger(doc)

    def _install_signals(self) -> None:
        if not self.install_signals or threading.current_thread() is not threading.main_thread():
            return

        def on_stop(signum: int, frame: Any) -> None:
            self.request_stop(signal.Signals(signum).name)

        for s in (signal.SIGTERM, signal.SIGINT):
            self._previous_signals[s] = signal.signal(s, on_stop)

    def request_stop(self, reason: str = "requested") -> None:
        if not self.stop_reason:
            self.stop_reason = reason
        self.stop_event.set()

    # ------------------------------------------------------------------------------------------------
    # capture

    def _start_capture(self) -> None:
        self._capture_thread = threading.Thread(target=self._capture_guarded, name="edgeface-capture", daemon=True)
        self._capture_thread.start()

    def _capture_guarded(self) -> None:
        try:
            self._capture_loop()
        except CaptureError as e:  # configuration: fatal, the message says what to change
            self.fatal = e
            log.error("capture.unusable", error=str(e))
            self.request_stop("capture error")
        except BaseException as e:  # a crash: the supervisor restarts the capture thread
            self._capture_error = e
            log.exception("stage.crashed", stage="capture", error=f"{type(e).__name__}: {e}")

    def _capture_loop(self) -> None:
        cfg = self.config.capture
        src = self.source
        backoff = Backoff(cfg.retry_min_s, cfg.retry_max_s)
        trigger_mode = cfg.mode == "trigger" and src.kind != "folder"
        interval = 1.0 / cfg.fps if (cfg.fps > 0 and src.live and not trigger_mode) else 0.0
        opened, lost = False, False
        next_due = time.monotonic()
        try:
            while not self.stop_event.is_set():
                self._capture_beat = time.monotonic()
                if not opened:
                    try:
                        src.open()
                    except SourceUnavailable as e:
                        delay = backoff.next_delay()
                        log.warning("capture.unavailable", source=src.name, error=str(e), retry_in_s=round(delay, 2))
                        self.stop_event.wait(delay)
                        continue
                    opened = True
                    backoff.reset()
                    self.metrics.set("edgeface_capture_up", 1)
                    if lost:
                        self.metrics.inc("edgeface_capture_reopens_total")
                        log.info("capture.reopened", source=src.name)
                try:
                    if trigger_mode:
                        reason = self.triggers.wait(0.5)
                        if reason is None:
                            continue
                        for _ in range(cfg.frames_per_trigger):
                            frame = src.read(timeout=2.0)
                            if frame is not None:
                                frame.meta["trigger"] = reason
                                self._submit(frame)
                        continue
                    if interval:
                        wait = next_due - time.monotonic()
                        if wait > 0 and self.stop_event.wait(wait):
                            break
                        next_due = max(next_due + interval, time.monotonic())
                    frame = src.read(timeout=0.5)
                    if frame is not None:
                        self._submit(frame)
                except SourceUnavailable as e:
                    self.metrics.set("edgeface_capture_up", 0)
                    src.close()
                    opened, lost = False, True
                    delay = backoff.next_delay()
                    log.warning("capture.lost", source=src.name, error=str(e), retry_in_s=round(delay, 2))
                    self.stop_event.wait(delay)
                except EndOfSource as e:
                    log.info("capture.ended", source=src.name, reason=str(e))
                    self.capture_done.set()
                    return
        finally:
            if opened:
                src.close()
            self.metrics.set("edgeface_capture_up", 0)

    def _submit(self, frame: Frame) -> None:
        job = FrameJob(frame)
        self.metrics.inc("edgeface_frames_captured_total", source=frame.source)
        if self.source.live:
            while True:
                try:
                    self.frames.put_nowait(job)
                    return
                except queue.Full:
                    try:
                        self.frames.get_nowait()
                        self.metrics.inc("edgeface_frames_dropped_total")
                        with self._lock:
                            self.summary.dropped += 1
                    except queue.Empty:
                        pass
        while not self.abandon.is_set():  # files: wait for room, they must not be missed
            try:
                self.frames.put(job, timeout=0.5)
                return
            except queue.Full:
                self._capture_beat = time.monotonic()

    # ------------------------------------------------------------------------------------------------
    # stages

    @staticmethod
    def _bump(job: FrameJob) -> None:
        job.frame.attempts += 1

    def _infer(self, engine: Engine, job: FrameJob) -> None:
        frame = job.frame
        image = frame.image
        if image is None:
            assert frame.path is not None
            try:
                image = engine.load_image(frame.path)
            except ImageError as e:
                job.status, job.error = "unreadable", str(e)
                log.warning("capture.unreadable", file=str(frame.path), error=str(e),
                            hint="the file is skipped; a changed version of it is read again")
                self.faces_q.put(FrameFaces(job, []))
                return
        detected = engine.detect_and_assess(image)
        embeddings = engine.embed_detected(image, detected)  # None for faces the quality gate refused
        observations = []
        for i, d in enumerate(detected):
            observations.append(Observation(
                job, i, d.face, d.quality, embeddings[i],
                crop=face_crop(image, d.face.box) if self.need_crop else None,
                image=image if self.keep_frame else None,
            ))
            self.metrics.inc("edgeface_faces_total", verdict="passed" if d.quality.passed else "refused")
        job.faces = len(detected)
        frame.image = None  # the observations keep what they need
        self.faces_q.put(FrameFaces(job, observations))

    def _match(self, ctx: Any, ff: FrameFaces) -> None:
        gallery = self.gallery.current()
        for obs in ff.observations:
            if obs.embedding is None:
                continue
            if gallery is None:
                obs.decision, obs.gallery_version, obs.threshold = None, None, self.engine_threshold
            else:
                obs.decision = gallery.identify(obs.embedding)
                obs.gallery_version, obs.threshold = gallery.version, obs.decision.threshold
        self.matched_q.put(ff)

    def _sink(self, ctx: Any, ff: FrameFaces) -> None:
        job = ff.job
        self._emit(self.tracker.tick(job.frame.source, job.frame.captured_at))
        for obs in ff.observations:
            if obs.placed:
                continue  # already placed before a crash of this stage
            job.open_faces += 1
            obs.placed = True
            self._emit(self.tracker.add(obs))
        job.routed = True
        self._maybe_complete(job)

    def _sink_idle(self, ctx: Any) -> None:
        self._emit(self.tracker.idle())

    def _emit(self, tracks: list[Track]) -> None:
        for t in tracks:
            doc = build_result(t, device_id=self.device_id, model_id=self.model_id,
                               include_crop=self.config.mqtt.include_crop,
                               max_crop_bytes=self.config.mqtt.max_crop_bytes)
            rid = doc["id"]
            keep = t.best.image if self.keep_frame else t.best.crop
            self.retention.save(keep, rid, t.best.captured_at)
            stored = self._store(doc)
            merged = len(t.members) - 1
            if merged:
                self.metrics.inc("edgeface_faces_merged_total", merged)
            with self._lock:
                self.summary.merged += merged
                if stored:
                    self.summary.results[doc["decision"]] = self.summary.results.get(doc["decision"], 0) + 1
            for obs in t.members:
                if stored:
                    obs.job.results.append(rid)
                else:
                    obs.job.status, obs.job.error = "not_stored", "the outbox refused the result at shutdown"
                obs.job.open_faces -= 1
                obs.image = obs.crop = None
            if stored:
                self._remember(doc, t)
            for job in t.jobs:
                self._maybe_complete(job)

    def _store(self, doc: dict[str, Any]) -> bool:
        """Put one result in the outbox; wait (retrying) while the outbox is full, unless shutting down late."""
        warned = False
        while True:
            try:
                enqueue_result(self.outbox, doc, max_payload_bytes=self.config.mqtt.max_payload_bytes)
            except (OutboxFull, OutboxDiskFull) as e:
                if not warned:
                    log.error("result.waiting_for_outbox", id=doc["id"], error=str(e),
                              hint="the pipeline waits (live frames are dropped meanwhile) until the outbox has room")
                    warned = True
                if self.abandon.wait(1.0):
                    self.metrics.inc("edgeface_results_not_stored_total")
                    with self._lock:
                        self.summary.not_stored += 1
                    log.error("result.not_stored", id=doc["id"], error=str(e))
                    return False
                continue
            self.metrics.inc("edgeface_results_total", decision=doc["decision"])
            if self.publisher is not None:
                self.publisher.notify()
            log.info("result.stored", id=doc["id"], decision=doc["decision"], source=doc.get("source"),
                     candidate=doc["candidates"][0]["identity_id"] if doc["candidates"] else None,
                     score=doc["candidates"][0]["score"] if doc["candidates"] else None)
            return True

    def _remember(self, doc: dict[str, Any], track: Track) -> None:
        top = doc["candidates"][0] if doc["candidates"] else None
        rec = {"id": doc["id"], "source": doc.get("source"), "decision": doc["decision"],
               "identity": top["identity_id"] if top else None, "name": top.get("display_name") if top else None,
               "score": top["score"] if top else None, "faces": len(track.members),
               "reasons": doc.get("refusal_reasons", [])}
        self._recent.append(rec)
        if self.on_result is not None:
            self.on_result(rec)

    def _maybe_complete(self, job: FrameJob) -> None:
        if not job.complete or job.completed:
            return
        job.completed = True
        if job.status == "not_stored":
            return  # the source keeps it pending: processed again at the next start
        outcome = job.outcome()
        self.source.done(job.frame, outcome)
        if job.frame.path is not None:
            self.retention.track_source(job.frame.path, list(outcome.results))
        name = {"done": "edgeface_frames_processed_total", "unreadable": "edgeface_frames_unreadable_total",
                "failed": "edgeface_frames_failed_total"}.get(job.status, "edgeface_frames_failed_total")
        self.metrics.inc(name)
        with self._lock:
            self.summary.frames += 1
            self.summary.faces += job.faces
            if job.status == "unreadable":
                self.summary.unreadable += 1
            elif job.status == "failed":
                self.summary.failed += 1

    def _give_up_frame(self, job: FrameJob, error: BaseException) -> None:
        job.status, job.error = "failed", f"{type(error).__name__}: {error}"
        log.error("frame.failed", source=job.frame.source, key=job.frame.key, error=job.error)
        self.faces_q.put(FrameFaces(job, []))

    def _give_up_faces(self, ff: FrameFaces, error: BaseException) -> None:
        self._give_up_frame(ff.job, error)

    def _give_up_faces_at_sink(self, ff: FrameFaces, error: BaseException) -> None:
        job = ff.job
        job.status, job.error = "failed", f"{type(error).__name__}: {error}"
        log.error("frame.failed", source=job.frame.source, key=job.frame.key, error=job.error)
        job.routed = True
        self._maybe_complete(job)

    # ------------------------------------------------------------------------------------------------
    # supervision, status, watchdog

    def _supervise(self) -> None:
        for st in self.stages:
            st.supervise()
        t = self._capture_thread
        if t is not None and not t.is_alive() and not self.stop_event.is_set() and not self.capture_done.is_set() \
                and self.fatal is None:
            self._capture_restarts += 1
            self.metrics.inc("edgeface_stage_restarts_total", stage="capture")
            log.warning("stage.restarted", stage="capture", restarts=self._capture_restarts)
            self.stop_event.wait(min(30.0, 0.5 * 2 ** min(self._capture_restarts, 6)))
            if not self.stop_event.is_set():
                self._start_capture()
        pub = self.publisher
        if pub is not None and not pub.alive and not self.stop_event.is_set():
            from ..mqtt import Publisher

            self.metrics.inc("edgeface_stage_restarts_total", stage="publisher")
            log.warning("stage.restarted", stage="publisher", error=str(pub.error))
            self.publisher = Publisher.from_config(self.config, self.outbox, gallery_version=lambda: self.gallery.version,
                                                   model_id=self.model_id, on_command=self._on_command,
                                                   on_announce=self._on_announce)
            self.publisher.start()
        if self._sync_thread is not None and not self._sync_thread.is_alive() and not self.stop_event.is_set():
            self.metrics.inc("edgeface_stage_restarts_total", stage="sync")
            self._sync_thread = threading.Thread(target=self._sync_loop, name="edgeface-sync", daemon=True)
            self._sync_thread.start()

    def _health(self) -> str | None:
        """Why the unit is not healthy (watchdog pings withheld), or None."""
        stall = self.config.run.stall_s
        for st in self.stages:
            why = st.stalled(stall)
            if why:
                return why
        t = self._capture_thread
        if t is not None and t.is_alive() and time.monotonic() - self._capture_beat > stall:
            return f"capture silent for {time.monotonic() - self._capture_beat:.0f} s"
        return None

    def _watchdog(self) -> None:
        n = self.notifier
        if n.watchdog_s is None or time.monotonic() < self._next_ping:
            return
        why = self._health()
        if why is None:
            n.watchdog()
            self._next_ping = time.monotonic() + n.watchdog_s / 3
            self._watchdog_withheld = False
        elif not self._watchdog_withheld:
            log.error("watchdog.withheld", reason=why, hint="systemd restarts the service if this lasts WatchdogSec")
            self._watchdog_withheld = True

    def render_metrics(self) -> str:
        return self.metrics.render()

    def _refresh(self, state: str = "running") -> dict[str, Any]:
        """Update gauges and the status document (and file)."""
        cfg, m = self.config, self.metrics
        fps, cps = m.sample_rates()
        for name, q in (("frames", self.frames), ("faces", self.faces_q), ("matched", self.matched_q)):
            m.set("edgeface_queue_depth", q.qsize(), queue=name)
        try:
            ob = self.outbox.stats().as_dict()
        except EdgefaceError as e:
            ob = {"error": str(e)}
        m.set("edgeface_outbox_pending", ob.get("pending", 0))
        m.set("edgeface_outbox_bytes", ob.get("bytes", 0))
        m.set("edgeface_outbox_oldest_age_seconds", ob.get("oldest_age_s") or 0)
        gallery = status_mod.gallery_info(cfg)
        m.set("edgeface_gallery_version", gallery.get("version", 0))
        if gallery.get("age_s") is not None:
            m.set("edgeface_gallery_age_seconds", gallery["age_s"])
        pub = self.publisher
        connected = bool(pub is not None and pub.stats.connected)
        if connected:
            self._last_connected_at = time.time()
        m.set("edgeface_mqtt_connected", int(connected))
        if self._last_connected_at:
            m.set("edgeface_mqtt_last_connected_timestamp_seconds", self._last_connected_at)
        disk = status_mod.disk_info(cfg)
        m.set("edgeface_disk_free_bytes", disk["free_bytes"])
        for k, v in disk["edgeface_bytes"].items():
            m.set("edgeface_disk_used_bytes", v, kind=k)
        ru = resource.getrusage(resource.RUSAGE_SELF)
        m.set("edgeface_process_cpu_seconds_total", round(ru.ru_utime + ru.ru_stime, 3))
        m.set("edgeface_process_resident_memory_bytes", _rss_bytes())
        m.set("edgeface_up", 1 if state != "stopped" else 0)
        m.set("edgeface_start_time_seconds", round(self.started_at, 3))
        link: dict[str, Any] = {"configured": bool(cfg.mqtt.host), "host": cfg.mqtt.host, "connected": connected,
                                "last_connected_at": self._last_connected_at}
        if pub is not None:
            link.update(last_error=pub.stats.last_error, reconnects=max(0, pub.stats.connects - 1),
                        published=pub.stats.published, acked=pub.stats.acked)
        with self._lock:
            summary = dataclasses.replace(self.summary, results=dict(self.summary.results))
        doc = {
            "state": state, "pid": os.getpid(), "device_id": self.device_id, "version": __version__,
            "started_at": round(self.started_at, 3), "updated_at": round(time.time(), 3),
            "interval_s": cfg.status.interval_s,
            "source": {**self.source.describe(), "up": bool(m.get("edgeface_capture_up")),
                       "reopens": int(m.total("edgeface_capture_reopens_total"))},
            "rates": {"frames_per_s": round(fps, 3), "faces_per_s": round(cps, 3), "window_s": m.RATE_WINDOW_S},
            "counters": {"frames_captured": int(m.total("edgeface_frames_captured_total")),
                         "frames_processed": int(m.total("edgeface_frames_processed_total")),
                         "frames_dropped": int(m.total("edgeface_frames_dropped_total")),
                         "frames_unreadable": int(m.total("edgeface_frames_unreadable_total")),
                         "frames_failed": int(m.total("edgeface_frames_failed_total")),
                         "faces": int(m.total("edgeface_faces_total")),
                         "results": {k: int(v) for k, v in m.by_label("edgeface_results_total", "decision").items()},
                         "faces_merged": int(m.total("edgeface_faces_merged_total"))},
            "gallery": gallery, "outbox": ob, "link": link, "disk": disk,
            "errors": {"last_hour": m.errors.last_hour(), "total": m.errors.total, "recent": m.errors.recent()},
            "stages": {**{st.name: st.describe() for st in self.stages},
                       "capture": {"restarts": self._capture_restarts}},
            "retention": {"save": cfg.retention.save, "held": self.retention.pending()},
            "summary": summary.as_dict() | {"recent": []},
        }
        self._status_doc = doc
        try:
            status_mod.write_status(status_mod.status_path(cfg), doc)
        except OSError as e:
            log.warning("status.write_failed", error=str(e))
        return doc

    def _tick(self) -> None:
        self._supervise()
        self._watchdog()
        now = time.monotonic()
        if now >= self._next_status:
            self._next_status = now + self.config.status.interval_s
            doc = self._refresh()
            self.notifier.status(f"{doc['rates']['frames_per_s']:.1f} frames/s, {doc['rates']['faces_per_s']:.1f} "
                                 f"faces/s, outbox {doc['outbox'].get('pending', '?')}, "
                                 f"{'online' if doc['link']['connected'] else 'offline'}")
        if now >= self._next_sweep:
            self._next_sweep = now + self.config.retention.sweep_s
            try:
                self.retention.sweep()
            except EdgefaceError as e:
                log.warning("retention.sweep_failed", error=str(e))

    # ------------------------------------------------------------------------------------------------
    # run and shutdown

    def run(self) -> int:
        """Start everything, run until stopped or the source ends, drain, and return the exit code."""
        logging.getLogger().addHandler(self.metrics.errors)  # "errors in the last hour" = the log's errors
        try:
            self._setup()
            self._start_network()
        except EdgefaceError as e:
            log.error("daemon.cannot_start", error=str(e))
            self._close_partial()
            logging.getLogger().removeHandler(self.metrics.errors)
            raise
        self._install_signals()
        if self.config.capture.mode == "trigger" and self.source.kind != "folder":
            install_triggers(self.triggers, self.config.capture.triggers, self.config.capture.gpio_pin,
                             main_thread=threading.current_thread() is threading.main_thread())
        for st in self.stages:
            st.start()
        self._start_capture()
        log.info("daemon.started", device_id=self.device_id, source=self.source.kind, name=self.source.name,
                 workers=self.config.run.workers, gallery_version=self.gallery.version,
                 mqtt=self.config.mqtt.host or "off", pid=os.getpid())
        self.notifier.ready(f"running: source {self.source.kind} {self.source.name}")
        deadline = time.monotonic() + self.duration_s if self.duration_s else None
        try:
            while not self.stop_event.is_set():
                self._tick()
                if self.capture_done.is_set():
                    self.request_stop("source ended")
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    self.request_stop("duration reached")
                    break
                self.stop_event.wait(0.1)
        finally:
            self._shutdown()
        if isinstance(self.fatal, CaptureError):
            return EXIT_CONFIG
        return EXIT_FAILED if self.fatal is not None else EXIT_OK

    def _shutdown(self) -> None:
        cfg = self.config
        self.notifier.stopping("draining")
        log.info("daemon.stopping", reason=self.stop_reason or "stopped", queued_frames=self.frames.qsize())
        self.stop_event.set()
        deadline = time.monotonic() + cfg.run.drain_timeout_s
        if self._capture_thread is not None:
            self._capture_thread.join(max(0.0, deadline - time.monotonic()))
        for st in self.stages:
            st.close()
            while not st.drained and time.monotonic() < deadline:
                st.supervise()
                self._watchdog()
                time.sleep(0.02)
            if not st.drained:
                break
        if time.monotonic() >= deadline or not all(st.drained for st in self.stages):
            self.abandon.set()
            log.error("daemon.drain_timeout", timeout_s=cfg.run.drain_timeout_s, frames_left=self.frames.qsize(),
                      hint="frames still in memory are lost (files are processed again at the next start)")
        if not self.sink.slots[0].thread or not self.sink.slots[0].thread.is_alive():
            self._emit(self.tracker.close_all())
        pub = self.publisher
        if pub is not None:
            if pub.stats.connected:
                pub.wait_drained(max(0.0, deadline - time.monotonic()))
            pub.stop()
        self._sync_stop.set()
        self.triggers.close()
        try:
            self.retention.sweep()
        except EdgefaceError as e:
            log.warning("retention.sweep_failed", error=str(e))
        with self._lock:
            self.summary.outbox_pending = self.outbox.pending_count()
            self.summary.stage_restarts = sum(st.restarts for st in self.stages) + self._capture_restarts
            self.summary.capture_reopens = int(self.metrics.total("edgeface_capture_reopens_total"))
            self.summary.recent = list(self._recent)
        self._refresh("stopped")
        self.source.shutdown()
        self.retention.close()
        self.gallery.close()
        self.outbox.close()
        if self.endpoint is not None:
            self.endpoint.stop()
        for s, previous in self._previous_signals.items():
            signal.signal(s, previous)
        log.info("daemon.stopped", reason=self.stop_reason, frames=self.summary.frames, faces=self.summary.faces,
                 results=self.summary.results, outbox_pending=self.summary.outbox_pending)
        logging.getLogger().removeHandler(self.metrics.errors)

    def _close_partial(self) -> None:
        for name in ("retention", "outbox"):
            obj = getattr(self, name, None)
            if obj is not None:
                obj.close()
        if getattr(self, "gallery", None) is not None:
            self.gallery.close()
        if self.publisher is not None:
            self.publisher.stop()
        if self.endpoint is not None:
            self.endpoint.stop()


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


__all__ = ["EXIT_CONFIG", "EXIT_FAILED", "EXIT_OK", "Daemon", "Summary", "source_label"]
