"""Pipeline stages: groups of threads over a bounded inbox, restarted when one crashes.

A stage thread takes an item, handles it, takes the next. An exception that escapes the handler is a
crash: the thread records it (logged with its traceback) and ends. The supervisor (the daemon's main
loop calls :meth:`Stage.supervise`) starts a replacement after a short backoff, with a fresh
per-thread context (an Engine: a crashed interpreter is not reused), and hands it the item that was
in progress, unless that item already crashed ``max_attempts`` times: then ``give_up(item)`` records
it as failed. Nothing in a stage's hands is lost to a crash.

Closing: :meth:`Stage.close` lets the threads finish what is queued and end; :attr:`Stage.drained`
says when they have.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

from ..logs import get_logger
from .metrics import Metrics

log = get_logger(__name__)

RESTART_MIN_S = 0.2
RESTART_MAX_S = 30.0
HEALTHY_AFTER_S = 60.0  # a thread that ran this long without crashing resets the backoff

Ctx = TypeVar("Ctx")  # what ``setup()`` makes for each thread (an Engine), None without setup
Item = TypeVar("Item")  # what travels through the inbox


@dataclass(eq=False)
class Slot(Generic[Item]):
    index: int
    thread: threading.Thread | None = None
    current: Item | None = None
    busy_since: float | None = None
    beat: float = field(default_factory=time.monotonic)
    started: float = field(default_factory=time.monotonic)
    error: BaseException | None = None


class Stage(Generic[Ctx, Item]):
    """``threads`` threads running ``handle(ctx, item)`` over ``inbox`` (see the module docstring).

    ``attempts(item)`` / ``bump(item)`` read and count an item's crashes; ``give_up(item)`` is called
    instead of a retry once it crashed ``max_attempts`` times. ``idle(ctx)`` runs when the inbox has
    been empty for a moment (timers, flushes).
    """

    def __init__(
        self,
        name: str,
        inbox: queue.Queue[Item],
        handle: Callable[[Ctx, Item], None],
        *,
        threads: int = 1,
        setup: Callable[[], Ctx] | None = None,
        idle: Callable[[Ctx], None] | None = None,
        attempts: Callable[[Item], int] = lambda item: 0,
        bump: Callable[[Item], None] = lambda item: None,
        give_up: Callable[[Item, BaseException], None] | None = None,
        max_attempts: int = 3,
        metrics: Metrics | None = None,
    ) -> None:
        self.name = name
        self.inbox = inbox
        self.handle = handle
        self.setup = setup
        self.idle = idle
        self.attempts = attempts
        self.bump = bump
        self.give_up = give_up
        self.max_attempts = max_attempts
        self.metrics = metrics or Metrics()
        self.slots: list[Slot[Item]] = [Slot(i) for i in range(threads)]
        self.restarts = 0
        self._closing = threading.Event()
        self._next_restart: dict[int, float] = {}
        self._crashes: dict[int, int] = {}

    # -- threads ------------------------------------------------------------------------------------

    def start(self) -> None:
        for slot in self.slots:
            self._spawn(slot)

    def _spawn(self, slot: Slot[Item]) -> None:
        slot.error, slot.current, slot.busy_since = None, None, None
        slot.started = slot.beat = time.monotonic()
        slot.thread = threading.Thread(
            target=self._run, args=(slot,), name=f"edgeface-{self.name}-{slot.index}", daemon=True
        )
        slot.thread.start()

    def _run(self, slot: Slot[Item]) -> None:
        try:
            ctx = self.setup() if self.setup is not None else cast(Ctx, None)  # no setup: the context is None
            while True:
                slot.beat = time.monotonic()
                try:
                    item = self.inbox.get(timeout=0.05 if self._closing.is_set() else 0.25)
                except queue.Empty:
                    if self.idle is not None:
                        self.idle(ctx)
                    if self._closing.is_set() and self.inbox.empty():
                        return
                    continue
                slot.current, slot.busy_since = item, time.monotonic()
                self.handle(ctx, item)
                slot.current, slot.busy_since = None, None
        except BaseException as e:  # a crash: recorded for the supervisor, logged with its traceback
            slot.error = e
            log.exception(
                "stage.crashed",
                stage=self.name,
                thread=slot.index,
                error=f"{type(e).__name__}: {e}",
                in_progress=slot.current is not None,
            )

    def supervise(self) -> int:
        """Restart crashed threads (and, while closing, revive one if work was put back); returns restarts."""
        restarted = 0
        now = time.monotonic()
        for slot in self.slots:
            t = slot.thread
            if t is None or t.is_alive():
                continue
            if slot.error is None and (not self._closing.is_set() or self.inbox.empty()):
                continue  # ended normally
            retry = None
            if slot.error is not None:
                if now < self._next_restart.get(slot.index, 0.0):
                    continue
                retry = self._after_crash(slot, now)
                restarted += 1
            self._spawn(slot)
            if retry is not None:  # after the spawn: with one thread, the replacement is what empties a full inbox
                self._put_back(retry)
        return restarted

    def _after_crash(self, slot: Slot[Item], now: float) -> Item | None:
        """Count the crash and set the back-off; returns the crashed item when it is to be tried again."""
        error = slot.error
        assert error is not None
        crashes = 0 if now - slot.started > HEALTHY_AFTER_S else self._crashes.get(slot.index, 0)
        self._crashes[slot.index] = crashes + 1
        self._next_restart[slot.index] = now + min(RESTART_MAX_S, RESTART_MIN_S * 2**crashes)
        self.restarts += 1
        self.metrics.inc("edgeface_stage_restarts_total", stage=self.name)
        item = slot.current
        retry = None
        if item is not None:
            self.bump(item)
            if self.attempts(item) >= self.max_attempts and self.give_up is not None:
                log.error(
                    "stage.gave_up",
                    stage=self.name,
                    attempts=self.attempts(item),
                    error=str(error),
                    hint="the item crashed this stage every time; it is recorded as failed",
                )
                self.give_up(item, error)
            else:
                retry = item
        log.warning(
            "stage.restarted", stage=self.name, thread=slot.index, restarts=self.restarts, retried_item=item is not None
        )
        return retry

    def _put_back(self, item: Item) -> None:
        while True:  # the inbox may be full; its other threads (or the replacement) empty it
            try:
                self.inbox.put(item, timeout=1.0)
                return
            except queue.Full:
                log.warning("stage.requeue_waiting", stage=self.name)

    # -- closing and health ----------------------------------------------------------------------------

    def close(self) -> None:
        self._closing.set()

    @property
    def drained(self) -> bool:
        return (
            self._closing.is_set()
            and self.inbox.empty()
            and not any(s.thread is not None and s.thread.is_alive() for s in self.slots)
            and not any(s.error is not None for s in self.slots)
        )

    def stalled(self, stall_s: float, now: float | None = None) -> str | None:
        """A description of a thread busy on one item (or silent) for longer than ``stall_s``, else None."""
        now = time.monotonic() if now is None else now
        for s in self.slots:
            if s.thread is None or not s.thread.is_alive():
                continue
            if s.busy_since is not None and now - s.busy_since > stall_s:
                return f"{self.name}-{s.index} busy on one item for {now - s.busy_since:.0f} s"
            if s.busy_since is None and now - s.beat > stall_s:
                return f"{self.name}-{s.index} silent for {now - s.beat:.0f} s"
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "threads": len(self.slots),
            "alive": sum(1 for s in self.slots if s.thread and s.thread.is_alive()),
            "busy": sum(1 for s in self.slots if s.busy_since is not None),
            "restarts": self.restarts,
            "queued": self.inbox.qsize(),
        }
