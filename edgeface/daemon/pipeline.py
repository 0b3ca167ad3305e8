"""The stages between the capture thread and the outbox: infer -> match -> sink, over bounded queues.

::

  frames ──> infer x run.workers ──faces──> match ──matched──> sink ──put──> outbox
  (bounded)  detect, quality gate,           gallery           track/dedup, final match on the
             align, embed (own Engine)       (reopened on sync) fused track, result payload,
                                                                retention, the source's ledger

* Each stage is a :class:`~edgeface.daemon.stages.Stage`: a crashed thread is restarted and the frame
  it held is retried, then (``run.max_attempts``) recorded as failed.
* A frame is complete when every face's result is in the outbox; only then does the source record it
  (the folder's ledger), so a kill -9 at any point loses nothing that a restart does not redo.
* The outbox full: the sink waits (retrying) until there is room, unless the drain deadline passed.
* A track's result carries the match of its faces' fused template (:mod:`~edgeface.daemon.fusion`),
  searched when the track ends; the match stage and the sink search the gallery under one lock, so a
  gallery reopened after a sync is never closed under a search.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..capture.context import CodeReaders
from ..errors import ImageError, OutboxDiskFull, OutboxFull
from ..logs import get_logger
from ..mqtt.queue import enqueue_result
from . import steps
from .dedup import Track
from .fusion import final_match
from .metrics import Metrics
from .results import build_result, face_crop
from .stages import Stage
from .summary import Tally
from .work import FrameFaces, FrameJob, Observation

if TYPE_CHECKING:
    import numpy as np

    from ..gallery.match import Decision
    from ..vision.engine import Engine
    from .wiring import Unit

log = get_logger(__name__)

OnResult = Callable[[dict[str, Any]], None]  # a short record of each stored result (the demo, tests)


class Pipeline:
    """The frame queue (:attr:`frames`, filled by the capture loop) and the stages that empty it."""

    def __init__(
        self,
        unit: Unit,
        *,
        metrics: Metrics,
        tally: Tally,
        abandon: threading.Event,
        on_result: OnResult | None = None,
    ) -> None:
        cfg = unit.config
        rc = cfg.run
        self.unit = unit
        self.metrics = metrics
        self.tally = tally
        self.abandon = abandon  # the drain deadline passed: a result waiting for the outbox gives up
        self.on_result = on_result
        self.need_crop = cfg.mqtt.include_crop or cfg.retention.save == "crop"
        self.keep_frame = cfg.retention.save == "frame"
        self.codes = CodeReaders(cfg.capture.tags)  # a case tag from a QR code or barcode in the frame
        self._gallery_lock = threading.Lock()  # the match stage and the sink's final match share the gallery
        self.frames: queue.Queue[FrameJob] = queue.Queue(rc.frame_queue)
        self.faces: queue.Queue[FrameFaces] = queue.Queue(rc.face_queue)
        self.matched: queue.Queue[FrameFaces] = queue.Queue(rc.face_queue)
        self.infer: Stage[Engine, FrameJob] = Stage(
            "infer",
            self.frames,
            self._infer,
            threads=rc.workers,
            setup=unit.new_engine,
            attempts=lambda j: j.frame.attempts,
            bump=_bump,
            give_up=self._give_up_frame,
            max_attempts=rc.max_attempts,
            metrics=metrics,
        )
        self.match: Stage[None, FrameFaces] = Stage(
            "match",
            self.faces,
            self._match,
            attempts=lambda ff: ff.job.frame.attempts,
            bump=lambda ff: _bump(ff.job),
            give_up=self._give_up_faces,
            max_attempts=rc.max_attempts,
            metrics=metrics,
        )
        self.sink: Stage[None, FrameFaces] = Stage(
            "sink",
            self.matched,
            self._sink,
            idle=self._sink_idle,
            attempts=lambda ff: ff.job.frame.attempts,
            bump=lambda ff: _bump(ff.job),
            give_up=self._give_up_faces_at_sink,
            max_attempts=rc.max_attempts,
            metrics=metrics,
        )
        self.stages: tuple[Stage[Any, Any], ...] = (self.infer, self.match, self.sink)

    @property
    def queues(self) -> dict[str, queue.Queue[Any]]:
        return {"frames": self.frames, "faces": self.faces, "matched": self.matched}

    def start(self) -> None:
        for st in self.stages:
            st.start()

    def drain(self, deadline: float, meanwhile: Callable[[], None]) -> bool:
        """Close the stages in order, each after the one before has drained (restarting crashed threads,
        calling ``meanwhile`` between checks), until ``deadline`` (monotonic); True if all drained."""
        for st in self.stages:
            st.close()
            while not st.drained and time.monotonic() < deadline:
                st.supervise()
                meanwhile()
                time.sleep(0.02)
            if not st.drained:
                break
        return all(st.drained for st in self.stages)

    def close_tracks(self) -> None:
        """Emit the tracks still open (at shutdown, unless a sink thread is still running)."""
        t = self.sink.slots[0].thread
        if not t or not t.is_alive():
            self._emit(self.unit.tracker.close_all())

    # -- infer: detect, assess, align, embed -------------------------------------------------------------

    def _infer(self, engine: Engine, job: FrameJob) -> None:
        frame = job.frame
        image = frame.image
        if image is None:
            assert frame.path is not None
            try:
                with self.metrics.timed("capture"):  # a file's frame is read and decoded here
                    image = engine.load_image(frame.path)
            except ImageError as e:
                job.status, job.error = "unreadable", str(e)
                log.warning(
                    "capture.unreadable",
                    file=str(frame.path),
                    error=str(e),
                    hint="the file is skipped; a changed version of it is read again",
                )
                self.faces.put(FrameFaces(job, []))
                return
        seen = steps.perceive(engine, image, self.metrics.observe)  # embedding None for faces the quality gate refused
        if seen:
            self.codes.read_into(frame, image)  # only frames with faces make results that carry a case
        observations = []
        for i, (d, embedding) in enumerate(seen):
            observations.append(
                Observation(
                    job,
                    i,
                    d.face,
                    d.quality,
                    embedding,
                    crop=face_crop(image, d.face.box) if self.need_crop else None,
                    image=image if self.keep_frame else None,
                )
            )
            self.metrics.inc("edgeface_faces_total", verdict="passed" if d.quality.passed else "refused")
        job.faces = len(seen)
        frame.image = None  # the observations keep what they need
        self.faces.put(FrameFaces(job, observations))

    # -- match: search the gallery ----------------------------------------------------------------------

    def _match(self, ctx: None, ff: FrameFaces) -> None:
        for obs in ff.observations:
            if obs.embedding is not None:
                obs.decision, obs.gallery_version, obs.threshold = self._search(obs.embedding)
        self.matched.put(ff)

    def _search(self, embedding: np.ndarray) -> tuple[Decision | None, int | None, float | None]:
        """The installed gallery's decision for one embedding, its version and threshold (None, None and
        the embedder's threshold while no gallery is usable)."""
        with self._gallery_lock:
            gallery = self.unit.gallery.current()
            if gallery is None:
                return None, None, self.unit.engine_threshold
            with self.metrics.timed("match"):
                decision = steps.search(gallery, embedding)
            return decision, gallery.version, decision.threshold

    # -- sink: track/dedup, results into the outbox, frames completed -----------------------------------

    def _sink(self, ctx: None, ff: FrameFaces) -> None:
        job = ff.job
        tracker = self.unit.tracker
        self._emit(tracker.tick(job.frame.source, job.frame.captured_at))
        for obs in ff.observations:
            if obs.placed:
                continue  # already placed before a crash of this stage
            job.open_faces += 1
            obs.placed = True
            self._emit(tracker.add(obs))
        job.routed = True
        self._maybe_complete(job)

    def _sink_idle(self, ctx: None) -> None:
        self._emit(self.unit.tracker.idle())

    def _emit(self, tracks: list[Track]) -> None:
        unit, mqtt = self.unit, self.unit.config.mqtt
        for t in tracks:
            t.final = final_match(t.best, t.fused, self._search)  # the track is final: match its fused faces
            doc = build_result(
                t,
                device_id=unit.device_id,
                model_id=unit.model_id,
                include_crop=mqtt.include_crop,
                max_crop_bytes=mqtt.max_crop_bytes,
            )
            rid = doc["id"]
            keep = t.best.image if self.keep_frame else t.best.crop
            unit.retention.save(keep, rid, t.best.captured_at)
            stored = self._store(doc)
            merged = len(t.members) - 1
            if merged:
                self.metrics.inc("edgeface_faces_merged_total", merged)
            if t.final.frames > 1:
                self.metrics.inc("edgeface_tracks_fused_total")
            self.tally.emitted(merged, doc["decision"] if stored else None)
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
        """Put one result in the outbox; while it is full, wait (retrying) unless shutting down late."""
        warned = False
        while True:
            try:
                with self.metrics.timed("outbox_enqueue"):
                    enqueue_result(self.unit.outbox, doc, max_payload_bytes=self.unit.config.mqtt.max_payload_bytes)
            except (OutboxFull, OutboxDiskFull) as e:
                if not warned:
                    log.error(
                        "result.waiting_for_outbox",
                        id=doc["id"],
                        error=str(e),
                        hint="the pipeline waits (live frames are dropped meanwhile) until the outbox has room",
                    )
                    warned = True
                if self.abandon.wait(1.0):
                    self.metrics.inc("edgeface_results_not_stored_total")
                    self.tally.not_stored()
                    log.error("result.not_stored", id=doc["id"], error=str(e))
                    return False
                continue
            self.metrics.inc("edgeface_results_total", decision=doc["decision"])
            self.unit.notify_publisher()
            # no candidate or score here: the log (journald) is on the card, unsealed (docs/protection.md)
            log.info("result.stored", id=doc["id"], decision=doc["decision"], source=doc.get("source"))
            return True

    def _remember(self, doc: dict[str, Any], track: Track) -> None:
        top = doc["candidates"][0] if doc["candidates"] else None
        rec = {
            "id": doc["id"],
            "source": doc.get("source"),
            "decision": doc["decision"],
            "identity": top["identity_id"] if top else None,
            "name": top.get("display_name") if top else None,
            "score": top["score"] if top else None,
            "threshold": doc.get("threshold"),
            "faces": len(track.members),
            "frames_fused": doc.get("frames_fused", 0),
            "reasons": doc.get("refusal_reasons", []),
        }
        self.tally.remember(rec)
        if self.on_result is not None:
            self.on_result(rec)

    def _maybe_complete(self, job: FrameJob) -> None:
        if not job.complete or job.completed:
            return
        job.completed = True
        if job.status == "not_stored":
            return  # the source keeps it pending: processed again at the next start
        outcome = job.outcome()
        self.unit.source.done(job.frame, outcome)
        if job.frame.path is not None:
            self.unit.retention.track_source(job.frame.path, list(outcome.results))
        name = {
            "done": "edgeface_frames_processed_total",
            "unreadable": "edgeface_frames_unreadable_total",
            "failed": "edgeface_frames_failed_total",
        }.get(job.status, "edgeface_frames_failed_total")
        self.metrics.inc(name)
        self.tally.frame(job.faces, job.status)

    # -- giving up on an item that crashed its stage run.max_attempts times ------------------------------

    def _give_up_frame(self, job: FrameJob, error: BaseException) -> None:
        job.status, job.error = "failed", f"{type(error).__name__}: {error}"
        log.error("frame.failed", source=job.frame.source, key=job.frame.key, error=job.error)
        self.faces.put(FrameFaces(job, []))

    def _give_up_faces(self, ff: FrameFaces, error: BaseException) -> None:
        self._give_up_frame(ff.job, error)

    def _give_up_faces_at_sink(self, ff: FrameFaces, error: BaseException) -> None:
        job = ff.job
        job.status, job.error = "failed", f"{type(error).__name__}: {error}"
        log.error("frame.failed", source=job.frame.source, key=job.frame.key, error=job.error)
        job.routed = True
        self._maybe_complete(job)


def _bump(job: FrameJob) -> None:
    job.frame.attempts += 1
