"""The daemon's life: start every part, tick until stopped, drain, exit code (``edgeface run``).

::

  capture ──frames──> infer × run.workers ──faces──> match ──faces──> sink ──put──> outbox ──> publisher
  thread    bounded   detect, quality gate,          gallery          track/dedup,  SQLite     own thread,
            live:     align, embed                   (reopened        result,       durable    never blocks
            drop      (an Engine per thread)         on sync)         ledger                   the pipeline

* Capture never waits on the network: the only thing downstream of the pipeline is the local outbox;
  the publisher drains it in its own thread (:mod:`~edgeface.daemon.capture_loop`,
  :mod:`~edgeface.daemon.pipeline`).
* Every thread is supervised and systemd's watchdog is fed only while every stage makes progress
  (:mod:`~edgeface.daemon.supervisor`); the status is refreshed every ``status.interval_s``
  (:mod:`~edgeface.daemon.snapshot`); every collaborator is created in one place
  (:mod:`~edgeface.daemon.wiring`).
* SIGTERM: capture stops, every queued frame is processed, open tracks are emitted, the publisher
  gets the rest of ``run.drain_timeout_s`` to deliver, and the process exits 0.
* Under systemd: READY=1 once running, WATCHDOG=1 while every stage makes progress, STOPPING=1.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

from ..capture import Source, TriggerHub
from ..errors import EdgefaceError
from ..logs import get_logger
from ..mqtt.link import device_id_from
from .capture_loop import CaptureLoop
from .commands import perform_wipe
from .metrics import Metrics
from .pipeline import OnResult, Pipeline
from .sdnotify import Notifier
from .snapshot import StatusBoard, StatusParts
from .summary import Summary, Tally
from .supervisor import Supervisor, Watchdog
from .wiring import Unit, open_unit

if TYPE_CHECKING:
    from ..config import Config

log = get_logger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2

SignalHandler = Callable[[int, FrameType | None], Any] | int | None  # what signal.signal returns


@dataclass(eq=False)
class Running:
    """The parts of one run, made by :meth:`Daemon.run` once the unit is open."""

    unit: Unit
    pipeline: Pipeline
    capture: CaptureLoop
    supervisor: Supervisor
    watchdog: Watchdog
    board: StatusBoard
    next_status: float = 0.0
    next_sweep: float = 0.0


class Daemon:
    """One field unit's pipeline. ``run()`` blocks until the source ends, ``duration_s`` passed or a stop
    was requested (SIGTERM/SIGINT or :meth:`request_stop`), drains, and returns an exit code."""

    def __init__(
        self,
        config: Config,
        *,
        source: Source | None = None,
        duration_s: float | None = None,
        install_signals: bool = True,
        on_result: OnResult | None = None,
    ) -> None:
        self.config = config
        self.device_id = device_id_from(config.device.id)
        self.duration_s = duration_s
        self.install_signals = install_signals
        self.on_result = on_result
        self.metrics = Metrics()
        self.notifier = Notifier()
        self.triggers = TriggerHub()
        self.tally = Tally()
        self.stop_event = threading.Event()
        self.abandon = threading.Event()  # drain deadline passed: stop retrying, exit
        self.running = threading.Event()  # every part started (READY=1 sent)
        self.stop_reason = ""
        self.started_at = time.time()
        self._source = source
        self._unit: Unit | None = None
        self._wipe: dict[str, Any] | None = None  # a verified wipe command: carried out after shutdown
        self.wipe_report: Any = None  # edgeface.protect.wipe.WipeReport, once a wipe ran
        self._previous_signals: dict[int, SignalHandler] = {}

    @property
    def summary(self) -> Summary:
        """What the run did (complete once :meth:`run` returned)."""
        return self.tally.summary

    def request_stop(self, reason: str = "requested") -> None:
        if not self.stop_reason:
            self.stop_reason = reason
        self.stop_event.set()

    def on_command(self, doc: dict[str, Any]) -> None:
        """Act on an MQTT command as the publisher does (``capture``, ``sync_gallery``, the signed ones);
        once running."""
        if self._unit is not None:
            self._unit.on_command(doc)

    # ------------------------------------------------------------------------------------------------
    # run

    def run(self) -> int:
        """Start everything, run until stopped or the source ends, drain, and return the exit code."""
        errors = self.metrics.errors
        logging.getLogger().addHandler(errors)  # "errors in the last hour" = the log's errors
        board = StatusBoard(self.config)
        try:
            unit = open_unit(
                self.config,
                device_id=self.device_id,
                metrics=self.metrics,
                triggers=self.triggers,
                status=board.latest,
                source=self._source,
            )
        except EdgefaceError as e:
            log.error("daemon.cannot_start", error=str(e))
            logging.getLogger().removeHandler(errors)
            raise
        except BaseException:
            logging.getLogger().removeHandler(errors)
            raise
        self._unit = unit
        r = self._assemble(unit, board)
        try:
            self._install_signals()
            r.capture.install_triggers(main_thread=threading.current_thread() is threading.main_thread())
        except BaseException:
            self._unit = None
            unit.close()
            logging.getLogger().removeHandler(errors)
            raise
        r.pipeline.start()
        r.capture.start()
        log.info(
            "daemon.started",
            device_id=self.device_id,
            source=unit.source.kind,
            name=unit.source.name,
            workers=self.config.run.workers,
            gallery_version=unit.gallery.version,
            mqtt=self.config.mqtt.host or "off",
            pid=os.getpid(),
        )
        self.notifier.ready(f"running: source {unit.source.kind} {unit.source.name}")
        self.running.set()
        deadline = time.monotonic() + self.duration_s if self.duration_s else None
        try:
            while not self.stop_event.is_set():
                self._tick(r)
                if r.capture.done.is_set():
                    self.request_stop("source ended")
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    self.request_stop("duration reached")
                    break
                self.stop_event.wait(0.1)
        finally:
            self._shutdown(r)
        if self.wipe_report is not None and not self.wipe_report.ok:
            return EXIT_FAILED
        return EXIT_CONFIG if r.capture.fatal is not None else EXIT_OK

    def _assemble(self, unit: Unit, board: StatusBoard) -> Running:
        pipeline = Pipeline(
            unit, metrics=self.metrics, tally=self.tally, abandon=self.abandon, on_result=self.on_result
        )
        capture = CaptureLoop(
            self.config.capture,
            unit.source,
            pipeline.frames,
            triggers=self.triggers,
            metrics=self.metrics,
            tally=self.tally,
            stop=self.stop_event,
            abandon=self.abandon,
            request_stop=self.request_stop,
        )
        supervisor = Supervisor(
            pipeline.stages,
            capture,
            publisher=unit.publisher,
            sync=unit.sync,
            stop=self.stop_event,
            stall_s=self.config.run.stall_s,
        )
        return Running(unit, pipeline, capture, supervisor, Watchdog(self.notifier, supervisor.health), board)

    def _install_signals(self) -> None:
        if not self.install_signals or threading.current_thread() is not threading.main_thread():
            return

        def on_stop(signum: int, frame: FrameType | None) -> None:
            self.request_stop(signal.Signals(signum).name)

        for s in (signal.SIGTERM, signal.SIGINT):
            self._previous_signals[s] = signal.signal(s, on_stop)

    def _parts(self, r: Running) -> StatusParts:
        u = r.unit
        return StatusParts(
            config=self.config,
            device_id=self.device_id,
            started_at=self.started_at,
            source=u.source,
            queues=r.pipeline.queues,
            stages=r.pipeline.stages,
            capture_restarts=r.capture.restarts,
            outbox=u.outbox,
            publisher=u.publisher.current if u.publisher is not None else None,
            retention=u.retention,
            summary=self.tally.snapshot(),
        )

    def _tick(self, r: Running) -> None:
        if r.unit.gallery.switch_ready.is_set():  # a new model's gallery is verified: switch both at the next start
            self.request_stop("embedder switch")
        r.supervisor.supervise()
        r.watchdog.feed()
        pub = r.unit.publisher
        r.unit.commands.tick(connected=pub is not None and pub.current.stats.connected)
        wipe = r.unit.commands.take_wipe()
        if wipe is not None:
            self._wipe = wipe
            self.request_stop("wipe")
        now = time.monotonic()
        if now >= r.next_status:
            r.next_status = now + self.config.status.interval_s
            doc = r.board.refresh(self._parts(r), self.metrics)
            self.notifier.status(
                f"{doc['rates']['frames_per_s']:.1f} frames/s, {doc['rates']['faces_per_s']:.1f} "
                f"faces/s, outbox {doc['outbox'].get('pending', '?')}, "
                f"{'online' if doc['link']['connected'] else 'offline'}"
            )
        if now >= r.next_sweep:
            r.next_sweep = now + self.config.retention.sweep_s
            self._sweep(r.unit)

    @staticmethod
    def _sweep(unit: Unit) -> None:
        try:
            unit.retention.sweep()
        except EdgefaceError as e:
            log.warning("retention.sweep_failed", error=str(e))

    # ------------------------------------------------------------------------------------------------
    # shutdown

    def _shutdown(self, r: Running) -> None:
        cfg, unit = self.config, r.unit
        self.notifier.stopping("draining")
        log.info("daemon.stopping", reason=self.stop_reason or "stopped", queued_frames=r.pipeline.frames.qsize())
        self.stop_event.set()
        deadline = time.monotonic() + cfg.run.drain_timeout_s
        r.capture.join(max(0.0, deadline - time.monotonic()))
        drained = r.pipeline.drain(deadline, r.watchdog.feed)
        if time.monotonic() >= deadline or not drained:
            self.abandon.set()
            log.error(
                "daemon.drain_timeout",
                timeout_s=cfg.run.drain_timeout_s,
                frames_left=r.pipeline.frames.qsize(),
                hint="frames still in memory are lost (files are processed again at the next start)",
            )
        r.pipeline.close_tracks()
        unit.stop_network(0.0 if self._wipe is not None else deadline - time.monotonic())
        self.triggers.close()
        self._sweep(unit)
        self.tally.finish(
            outbox_pending=unit.outbox.pending_count(),
            stage_restarts=r.supervisor.restarts,
            capture_reopens=int(self.metrics.total("edgeface_capture_reopens_total")),
        )
        r.board.refresh(self._parts(r), self.metrics, "stopped")
        unit.close()
        self._unit = None
        if self._wipe is not None:  # everything is closed: nothing writes while the wipe runs
            self.wipe_report = perform_wipe(unit.commands, self._wipe)
        for s, previous in self._previous_signals.items():
            signal.signal(s, previous)
        done = self.summary
        log.info(
            "daemon.stopped",
            reason=self.stop_reason,
            frames=done.frames,
            faces=done.faces,
            results=done.results,
            outbox_pending=done.outbox_pending,
        )
        logging.getLogger().removeHandler(self.metrics.errors)
