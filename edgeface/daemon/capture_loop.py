"""The capture thread: frames from the source into the pipeline's bounded frame queue.

* A source that cannot be opened, or is lost while reading, is (re)opened with backoff
  (``capture.retry_min_s`` .. ``retry_max_s``); a reopen is counted.
* Live frames never wait: when the queue is full the oldest queued frame is dropped (counted). Files
  wait for room, because they must not be missed (until the drain deadline passes).
* Trigger mode (not for folders) takes ``capture.frames_per_trigger`` frames per trigger; continuous
  mode paces a live source at ``capture.fps`` (0: as fast as inference keeps up).
* Each frame is stamped as it is queued with its place and its folder's case
  (:func:`edgeface.capture.context.stamp`); a trigger's frames carry its tag and its burst number.
* A :class:`~edgeface.errors.CaptureError` (configuration) is fatal and stops the daemon; any other
  crash ends the thread and :meth:`CaptureLoop.supervise` starts a new one after a backoff.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

from ..capture import EndOfSource, Frame, Source, TriggerHub
from ..capture.context import open_locator, stamp
from ..capture.place import Locator
from ..capture.settings import CaptureConfig
from ..capture.triggers import install as install_triggers
from ..errors import CaptureError, SourceUnavailable
from ..logs import get_logger
from ..mqtt.link import Backoff
from .metrics import Metrics
from .summary import Tally
from .work import FrameJob

log = get_logger(__name__)


class CaptureLoop:
    """Runs the source in its own thread (see the module docstring)."""

    def __init__(
        self,
        config: CaptureConfig,
        source: Source,
        frames: queue.Queue[FrameJob],
        *,
        triggers: TriggerHub,
        metrics: Metrics,
        tally: Tally,
        stop: threading.Event,
        abandon: threading.Event,
        request_stop: Callable[[str], None],
    ) -> None:
        self.cfg = config
        self.source = source
        self.frames = frames
        self.triggers = triggers
        self.metrics = metrics
        self.tally = tally
        self.stop = stop  # the daemon is stopping: leave the loop
        self.abandon = abandon  # the drain deadline passed: a file waiting for room gives up
        self.request_stop = request_stop
        self.done = threading.Event()  # the source ended (a folder processed once, a video file)
        self.fatal: CaptureError | None = None
        self.restarts = 0
        self.bursts = 0  # triggers taken: each one's frames form one dedup group (see dedup.merge_photos)
        self.beat = time.monotonic()  # progress: the loop went round, or a file waited for room
        self._thread: threading.Thread | None = None
        self._locator: Locator | None = None  # the place of each frame (capture.location), while the loop runs

    @property
    def trigger_mode(self) -> bool:
        return self.cfg.mode == "trigger" and self.source.kind != "folder"

    def install_triggers(self, *, main_thread: bool) -> None:
        """Start the configured trigger sources (trigger mode only)."""
        if self.trigger_mode:
            install_triggers(self.triggers, self.cfg.triggers, self.cfg.gpio_pin, main_thread=main_thread)

    # -- the thread and its supervision ----------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._guarded, name="edgeface-capture", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def supervise(self) -> None:
        """Start a new capture thread (after a backoff) if the last one crashed."""
        t = self._thread
        if (
            t is not None
            and not t.is_alive()
            and not self.stop.is_set()
            and not self.done.is_set()
            and self.fatal is None
        ):
            self.restarts += 1
            self.metrics.inc("edgeface_stage_restarts_total", stage="capture")
            log.warning("stage.restarted", stage="capture", restarts=self.restarts)
            self.stop.wait(min(30.0, 0.5 * 2 ** min(self.restarts, 6)))
            if not self.stop.is_set():
                self.start()

    def silent(self, stall_s: float) -> str | None:
        """Why the capture thread counts as stuck (no progress for ``stall_s``), or None."""
        if self.alive and time.monotonic() - self.beat > stall_s:
            return f"capture silent for {time.monotonic() - self.beat:.0f} s"
        return None

    def _guarded(self) -> None:
        try:
            self._loop()
        except CaptureError as e:  # configuration: fatal, the message says what to change
            self.fatal = e
            log.error("capture.unusable", error=str(e))
            self.request_stop("capture error")
        except BaseException as e:  # a crash: the supervisor restarts the capture thread
            log.exception("stage.crashed", stage="capture", error=f"{type(e).__name__}: {e}")

    # -- the loop --------------------------------------------------------------------------------------

    def _loop(self) -> None:
        cfg, src = self.cfg, self.source
        backoff = Backoff(cfg.retry_min_s, cfg.retry_max_s)
        trigger_mode = self.trigger_mode
        interval = 1.0 / cfg.fps if (cfg.fps > 0 and src.live and not trigger_mode) else 0.0
        opened, lost = False, False
        next_due = time.monotonic()
        self._locator = open_locator(cfg)
        try:
            while not self.stop.is_set():
                self.beat = time.monotonic()
                if not opened:
                    try:
                        src.open()
                    except SourceUnavailable as e:
                        delay = backoff.next_delay()
                        log.warning("capture.unavailable", source=src.name, error=str(e), retry_in_s=round(delay, 2))
                        self.stop.wait(delay)
                        continue
                    opened = True
                    backoff.reset()
                    self.metrics.set("edgeface_capture_up", 1)
                    if lost:
                        self.metrics.inc("edgeface_capture_reopens_total")
                        log.info("capture.reopened", source=src.name)
                try:
                    if trigger_mode:
                        trigger = self.triggers.next(0.5)
                        if trigger is None:
                            continue
                        self.bursts += 1
                        for _ in range(cfg.frames_per_trigger):
                            frame = src.read(timeout=2.0)
                            if frame is not None:
                                # a trigger's frames are one capture: its tag, and its own dedup group
                                frame.meta.update(
                                    trigger=trigger.reason, burst=self.bursts, burst_size=cfg.frames_per_trigger
                                )
                                if trigger.tag is not None:
                                    frame.meta["tag"] = trigger.tag
                                self.submit(frame)
                        continue
                    if interval:
                        wait = next_due - time.monotonic()
                        if wait > 0 and self.stop.wait(wait):
                            break
                        next_due = max(next_due + interval, time.monotonic())
                    t0 = time.perf_counter()
                    frame = src.read(timeout=0.5)
                    if frame is not None:
                        if frame.image is not None:  # a live frame (a file's is decoded by the infer stage)
                            self.metrics.observe("capture", time.perf_counter() - t0)
                        self.submit(frame)
                except SourceUnavailable as e:
                    self.metrics.set("edgeface_capture_up", 0)
                    src.close()
                    opened, lost = False, True
                    delay = backoff.next_delay()
                    log.warning("capture.lost", source=src.name, error=str(e), retry_in_s=round(delay, 2))
                    self.stop.wait(delay)
                except EndOfSource as e:
                    log.info("capture.ended", source=src.name, reason=str(e))
                    self.done.set()
                    return
        finally:
            if opened:
                src.close()
            if self._locator is not None:
                self._locator.close()
                self._locator = None
            self.metrics.set("edgeface_capture_up", 0)

    def submit(self, frame: Frame) -> None:
        """Queue a frame: a live one drops the oldest queued frame when full, a file waits for room."""
        stamp(frame, self.cfg, self._locator)  # its place and its folder's case, as captured
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
                        self.tally.dropped()
                    except queue.Empty:
                        pass
        while not self.abandon.is_set():  # files: wait for room, they must not be missed
            try:
                self.frames.put(job, timeout=0.5)
                return
            except queue.Full:
                self.beat = time.monotonic()
