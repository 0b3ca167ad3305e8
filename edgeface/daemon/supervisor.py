"""Supervision: every thread of the daemon is restarted when it dies, and systemd's watchdog is fed
only while every stage makes progress.

What is supervised, in the order :meth:`Supervisor.supervise` looks at it every tick:

* the pipeline's stage threads (:class:`~edgeface.daemon.stages.Stage`: restarted with backoff, the
  item in hand retried, then given up),
* the capture thread (:class:`~edgeface.daemon.capture_loop.CaptureLoop`: restarted with backoff unless
  the source ended or its configuration is unusable),
* the MQTT publisher (:class:`PublisherSlot`: a new publisher replaces one whose thread died),
* the gallery sync thread (:class:`SyncThread`: started again if it ended).

The watchdog rule (:class:`Watchdog`): under systemd with ``WatchdogSec``, ``WATCHDOG=1`` is sent every
``WatchdogSec / 3`` while :meth:`Supervisor.health` finds no stage thread busy on one item, or silent,
for longer than ``run.stall_s`` and no live capture thread silent that long. Otherwise the pings are
withheld (logged once per episode), so systemd restarts a unit that is alive but stuck.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..logs import get_logger
from .metrics import Metrics
from .sdnotify import Notifier
from .stages import Stage

if TYPE_CHECKING:
    from ..gallery.sync import Syncer
    from ..mqtt import Publisher
    from .capture_loop import CaptureLoop

log = get_logger(__name__)


class PublisherSlot:
    """The MQTT publisher in its own thread; one whose thread died is replaced by a new one from ``build``."""

    def __init__(self, build: Callable[[], Publisher], metrics: Metrics) -> None:
        self.build = build
        self.metrics = metrics
        self.current = build()

    def start(self) -> None:
        self.current.start()

    def supervise(self, stopping: bool) -> None:
        pub = self.current
        if not pub.alive and not stopping:
            self.metrics.inc("edgeface_stage_restarts_total", stage="publisher")
            log.warning("stage.restarted", stage="publisher", error=str(pub.error))
            self.current = self.build()
            self.current.start()

    def notify(self) -> None:
        """New results are in the outbox."""
        self.current.notify()

    def stop(self) -> None:
        self.current.stop()


class SyncThread:
    """The gallery sync loop (:meth:`Syncer.run`) in its own thread, started again if it ends."""

    def __init__(self, syncer: Syncer, metrics: Metrics) -> None:
        self.syncer = syncer
        self.metrics = metrics
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="edgeface-sync", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.syncer.run(self._stop)
        except Exception as e:  # the sync thread must not take the unit down; logged, retried by the supervisor
            log.exception("gallery.sync.crashed", error=str(e))

    def supervise(self, stopping: bool) -> None:
        if self._thread is not None and not self._thread.is_alive() and not stopping:
            self.metrics.inc("edgeface_stage_restarts_total", stage="sync")
            self.start()

    def trigger(self, announcement: dict[str, Any] | None = None) -> None:
        """Sync now (an MQTT command, or an announcement of a newer gallery)."""
        self.syncer.trigger(announcement)

    def stop(self) -> None:
        self._stop.set()


class Supervisor:
    """Restarts what died (:meth:`supervise`) and judges progress (:meth:`health`): see the module doc."""

    def __init__(
        self,
        stages: Sequence[Stage[Any, Any]],
        capture: CaptureLoop,
        *,
        publisher: PublisherSlot | None,
        sync: SyncThread | None,
        stop: threading.Event,
        stall_s: float,
    ) -> None:
        self.stages = stages
        self.capture = capture
        self.publisher = publisher
        self.sync = sync
        self.stop = stop
        self.stall_s = stall_s

    def supervise(self) -> None:
        for st in self.stages:
            st.supervise()
        self.capture.supervise()
        if self.publisher is not None:
            self.publisher.supervise(self.stop.is_set())
        if self.sync is not None:
            self.sync.supervise(self.stop.is_set())

    def health(self) -> str | None:
        """Why the unit is not healthy (watchdog pings withheld), or None."""
        for st in self.stages:
            why = st.stalled(self.stall_s)
            if why:
                return why
        return self.capture.silent(self.stall_s)

    @property
    def restarts(self) -> int:
        """Stage and capture thread restarts so far (the run's summary)."""
        return sum(st.restarts for st in self.stages) + self.capture.restarts


class Watchdog:
    """Feeds systemd's watchdog while ``health()`` says every stage makes progress (see the module doc)."""

    def __init__(self, notifier: Notifier, health: Callable[[], str | None]) -> None:
        self.notifier = notifier
        self.health = health
        self._next_ping = 0.0
        self._withheld = False

    def feed(self) -> None:
        n = self.notifier
        if n.watchdog_s is None or time.monotonic() < self._next_ping:
            return
        why = self.health()
        if why is None:
            n.watchdog()
            self._next_ping = time.monotonic() + n.watchdog_s / 3
            self._withheld = False
        elif not self._withheld:
            log.error("watchdog.withheld", reason=why, hint="systemd restarts the service if this lasts WatchdogSec")
            self._withheld = True
