"""Supervision: systemd's watchdog is fed only while every stage makes progress, and a stuck stage or a
silent capture thread is named."""

from __future__ import annotations

import logging
import queue
import threading
import time
import types
from collections.abc import Callable
from typing import Any, cast

import pytest

from edgeface.daemon import stages as stages_mod
from edgeface.daemon import supervisor
from edgeface.daemon.capture_loop import CaptureLoop
from edgeface.daemon.metrics import Metrics
from edgeface.daemon.sdnotify import Notifier
from edgeface.daemon.stages import Stage
from edgeface.daemon.supervisor import Supervisor, Watchdog


class RecordingNotifier(Notifier):
    def __init__(self, watchdog_s: float | None) -> None:
        super().__init__(env={})
        self.watchdog_s = watchdog_s
        self.pings = 0

    def watchdog(self) -> bool:
        self.pings += 1
        return True


def test_watchdog_pings_only_while_healthy_and_says_once_why_not(caplog: pytest.LogCaptureFixture) -> None:
    notifier = RecordingNotifier(watchdog_s=0.3)
    why: list[str | None] = [None]
    dog = Watchdog(notifier, lambda: why[0])
    dog.feed()
    dog.feed()  # within WatchdogSec / 3 of the last ping: not again
    assert notifier.pings == 1
    time.sleep(0.11)
    why[0] = "infer-0 busy on one item for 61 s"
    for _ in range(3):
        dog.feed()
    assert notifier.pings == 1  # withheld while a stage makes no progress
    assert [r.getMessage() for r in caplog.records].count("watchdog.withheld") == 1  # said once
    why[0] = None
    dog.feed()
    assert notifier.pings == 2  # progress again: fed again


def test_no_watchdog_no_pings() -> None:
    notifier = RecordingNotifier(watchdog_s=None)
    dog = Watchdog(notifier, lambda: pytest.fail("health is not asked without a watchdog"))
    dog.feed()
    assert notifier.pings == 0


def test_a_stage_busy_on_one_item_too_long_is_named() -> None:
    inbox: queue.Queue[int] = queue.Queue(4)
    release = threading.Event()
    stage: Stage[None, int] = Stage("infer", inbox, lambda ctx, item: release.wait(10))
    stage.start()
    try:
        inbox.put(1)
        deadline = time.monotonic() + 10
        while stage.stalled(0.2) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (stage.stalled(0.2) or "").startswith("infer-0 busy on one item")
        assert stage.stalled(60.0) is None
        capture = cast(
            CaptureLoop,
            types.SimpleNamespace(silent=lambda stall_s: "capture silent for 99 s" if stall_s == 0.2 else None),
        )
        sup = Supervisor([stage], capture, publisher=None, sync=None, stop=threading.Event(), stall_s=0.2)
        assert (sup.health() or "").startswith("infer-0 busy")  # the stages first, then the capture thread
        release.set()
        while stage.stalled(0.2) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sup.health() == "capture silent for 99 s"
    finally:
        release.set()
        stage.close()


def test_watchdog_pings_every_third_of_watchdogsec_and_says_why_it_withholds(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """On a clock the test moves: due exactly WatchdogSec / 3 after the last ping, not before; a withheld
    ping is logged with the reason health() gave and what systemd will do."""
    t = [1000.0]
    monkeypatch.setattr(supervisor, "time", types.SimpleNamespace(monotonic=lambda: t[0]))
    notifier = RecordingNotifier(watchdog_s=3.0)
    why: list[str | None] = [None]
    dog = Watchdog(notifier, lambda: why[0])
    dog.feed()
    assert notifier.pings == 1
    t[0] = 1000.9
    dog.feed()
    assert notifier.pings == 1  # 0.9 s < 3 s / 3
    t[0] = 1001.0
    dog.feed()
    assert notifier.pings == 2  # exactly a third of WatchdogSec later: due
    why[0] = "infer-0 busy on one item for 61 s"
    t[0] = 1002.0
    dog.feed()
    assert notifier.pings == 2
    (rec,) = [r for r in caplog.records if r.getMessage() == "watchdog.withheld"]
    assert rec.edgeface_fields == {  # type: ignore[attr-defined]
        "reason": "infer-0 busy on one item for 61 s",
        "hint": "systemd restarts the service if this lasts WatchdogSec",
    }


def test_stalled_judges_each_live_thread_at_the_time_given() -> None:
    """Stage.stalled on slots set by hand (plain data: the thread, when it took its item, its last beat)."""
    stage: Stage[None, int] = Stage("infer", queue.Queue(1), lambda ctx, item: None, threads=2)
    assert stage.stalled(0.0, now=1e12) is None  # not started: no thread to judge
    hold = threading.Event()
    live = threading.Thread(target=hold.wait, daemon=True)
    dead = threading.Thread(target=lambda: None)
    live.start()
    dead.start()
    dead.join()
    try:
        s0, s1 = stage.slots
        s0.thread, s0.busy_since, s0.beat = dead, 0.0, 0.0  # died on an item: the supervisor restarts it
        s1.thread, s1.busy_since, s1.beat = live, 100.0, 100.0
        assert stage.stalled(10.0, now=110.0) is None  # busy for exactly stall_s: not yet
        assert stage.stalled(10.0, now=171.0) == "infer-1 busy on one item for 71 s"  # the dead one skipped
        s1.busy_since = 165.0  # took an item 5 s ago, its last beat long before: busy, not silent
        assert stage.stalled(10.0, now=170.0) is None
        s1.busy_since = None
        assert stage.stalled(10.0, now=110.0) is None  # silent for exactly stall_s: not yet
        assert stage.stalled(10.0, now=142.0) == "infer-1 silent for 42 s"
    finally:
        hold.set()


# -- restarts: stages, the publisher slot, the sync thread (killed mutants of stages.py / supervisor.py) --


def _until(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    """True as soon as ``cond()`` is (asked once per try: it may change state)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return False


def _ours(record: logging.LogRecord) -> bool:
    """A record of the stage under test ('infer' or 'sink'), not of another test's 'match' stage."""
    return record.edgeface_fields.get("stage") in ("infer", "sink")  # type: ignore[attr-defined,no-any-return]


def _crashed(stage: Stage[None, str]) -> bool:
    return all(s.thread is not None and not s.thread.is_alive() for s in stage.slots)


def test_a_crashing_item_is_retried_with_doubling_backoff_up_to_the_ceiling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without give_up the item is put back every time; the restart waits 0.2 s, 0.4 s, 0.8 s ... at most
    30 s after each crash (on a clock the test moves), and a thread that ran 60 s resets the backoff."""
    t = [5000.0]
    monkeypatch.setattr(stages_mod, "time", types.SimpleNamespace(monotonic=lambda: t[0]))
    inbox: queue.Queue[str] = queue.Queue(4)
    tries: list[str] = []

    fixed = threading.Event()

    def handle(ctx: None, item: str) -> None:
        tries.append(item)
        if not fixed.is_set():
            raise RuntimeError(f"cannot handle {item}")

    metrics = Metrics()
    stage: Stage[None, str] = Stage("match", inbox, handle, metrics=metrics)
    assert stage.supervise() == 0  # not started: nothing to restart
    stage.start()
    try:
        inbox.put("frame-1")
        expected = [min(30.0, 0.2 * 2**n) for n in range(10)]  # 0.2 * 2**8 = 51.2: the 30 s ceiling
        assert expected[-2:] == [30.0, 30.0]
        for n, delay in enumerate(expected):
            assert _until(lambda: _crashed(stage)), f"crash {n + 1} not seen"
            assert stage.supervise() == 1  # restarted at once after the previous wait
            assert stage.restarts == n + 1
            assert _until(lambda: _crashed(stage)), f"crash {n + 2} not seen"  # the item, put back, crashes again
            t[0] += delay - 0.01
            assert stage.supervise() == 0, f"restart {n + 2} came before its {delay} s backoff"
            t[0] += 0.02
        assert stage.supervise() == 1
        assert _until(lambda: len(tries) >= len(expected) + 2)  # the replacement takes the put-back item
        assert set(tries) == {"frame-1"}
        assert metrics.get("edgeface_stage_restarts_total", stage="match") == len(expected) + 1
        assert stage.describe()["restarts"] == len(expected) + 1
        assert _until(lambda: _crashed(stage))
        t[0] = 8192.0  # past the backoff; a round number, so that 60 s later is exactly 60 s later
        assert stage.supervise() == 1
        assert _until(lambda: _crashed(stage))
        t[0] = 8192.0 + 60.0  # ran exactly HEALTHY_AFTER_S before crashing: not yet healthy
        assert stage.supervise() == 1
        assert _until(lambda: _crashed(stage))
        t[0] += 0.21
        assert stage.supervise() == 0  # still at the ceiling
        # Ran for more than HEALTHY_AFTER_S before this crash: the backoff starts again at 0.2 s.
        t[0] += 60.5
        assert stage.supervise() == 1
        assert _until(lambda: _crashed(stage))
        t[0] += 0.19
        assert stage.supervise() == 0
        t[0] += 0.02
        assert stage.supervise() == 1
    finally:
        fixed.set()  # the item goes through at last, so no thread of this test crashes after it
        t[0] += 100.0
        _until(lambda: stage.supervise() >= 0 and stage.inbox.empty() and not stage.describe()["busy"])
        stage.close()
        _until(lambda: stage.drained)


def test_an_item_that_crashes_max_attempts_times_is_given_up_and_the_stage_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    attempts: dict[str, int] = {}
    given_up: list[tuple[str, BaseException]] = []
    done: list[str] = []

    def handle(ctx: None, item: str) -> None:
        if item == "poison":
            raise ValueError("bad frame")
        done.append(item)

    inbox: queue.Queue[str] = queue.Queue(4)
    stage: Stage[None, str] = Stage(
        "infer",
        inbox,
        handle,
        attempts=lambda item: attempts.get(item, 0),
        bump=lambda item: attempts.__setitem__(item, attempts.get(item, 0) + 1),
        give_up=lambda item, e: given_up.append((item, e)),
        max_attempts=2,
    )
    stage.start()
    try:
        inbox.put("poison")
        assert _until(lambda: _crashed(stage))
        assert stage.supervise() == 1
        assert attempts == {"poison": 1} and given_up == []  # one crash of two allowed: retried
        assert _until(lambda: _crashed(stage))
        assert _until(lambda: stage.supervise() == 1)  # after the backoff
        assert attempts == {"poison": 2}
        ((item, err),) = given_up  # the second crash: given up, not retried a third time
        assert item == "poison" and isinstance(err, ValueError) and str(err) == "bad frame"
        inbox.put("good")
        assert _until(lambda: done == ["good"])
        assert not _crashed(stage) and stage.restarts == 2
    finally:
        stage.close()
    assert _until(lambda: stage.drained)
    (rec,) = [r for r in caplog.records if r.getMessage() == "stage.gave_up"]
    assert rec.edgeface_fields == {  # type: ignore[attr-defined]
        "stage": "infer",
        "attempts": 2,
        "error": "bad frame",
        "hint": "the item crashed this stage every time; it is recorded as failed",
    }
    crashed = [r.edgeface_fields for r in caplog.records if r.getMessage() == "stage.crashed" and _ours(r)]  # type: ignore[attr-defined]
    assert crashed == [{"stage": "infer", "thread": 0, "error": "ValueError: bad frame", "in_progress": True}] * 2
    restarted = [r.edgeface_fields for r in caplog.records if r.getMessage() == "stage.restarted" and _ours(r)]  # type: ignore[attr-defined]
    assert restarted == [
        {"stage": "infer", "thread": 0, "restarts": 1, "retried_item": True},
        {"stage": "infer", "thread": 0, "restarts": 2, "retried_item": True},
    ]


def test_a_crash_between_items_restarts_the_thread_without_retrying_anything(caplog: pytest.LogCaptureFixture) -> None:
    """A crash in idle() (no item in hand) restarts the thread; nothing is bumped or put back."""
    bumped: list[str] = []
    calls = [0]

    idle_contexts: list[str] = []

    def idle(ctx: str) -> None:
        calls[0] += 1
        idle_contexts.append(ctx)
        if calls[0] == 1:
            raise OSError("flush failed")

    contexts: list[str] = []

    def setup() -> str:
        contexts.append(f"engine-{len(contexts)}")
        return contexts[-1]

    seen: list[tuple[str, str]] = []
    inbox: queue.Queue[str] = queue.Queue(2)
    stage: Stage[str, str] = Stage(
        "sink", inbox, lambda ctx, item: seen.append((ctx, item)), setup=setup, idle=idle, bump=bumped.append
    )
    stage.start()
    try:
        assert _until(lambda: _crashed(stage))
        assert stage.supervise() == 1 and bumped == [] and inbox.empty()
        inbox.put("x")
        assert _until(lambda: seen == [("engine-1", "x")])  # a fresh context for the replacement
        n = calls[0]
        assert _until(lambda: calls[0] >= n + 3)  # an empty inbox: idle() again and again, the thread stays
        assert idle_contexts[0] == "engine-0" and set(idle_contexts[1:]) == {"engine-1"}
        thread = stage.slots[0].thread
        assert thread is not None and thread.name == "edgeface-sink-0" and thread.daemon
        d = stage.describe()
        assert d == {"threads": 1, "alive": 1, "busy": 0, "restarts": 1, "queued": 0}
    finally:
        stage.close()
    restarted = [r.edgeface_fields for r in caplog.records if r.getMessage() == "stage.restarted" and _ours(r)]  # type: ignore[attr-defined]
    assert restarted == [{"stage": "sink", "thread": 0, "restarts": 1, "retried_item": False}]
    crashed = [r.edgeface_fields for r in caplog.records if r.getMessage() == "stage.crashed" and _ours(r)]  # type: ignore[attr-defined]
    assert crashed == [{"stage": "sink", "thread": 0, "error": "OSError: flush failed", "in_progress": False}]


def test_closing_lets_queued_work_finish_and_a_thread_that_ended_normally_is_not_restarted() -> None:
    release = threading.Event()
    seen: list[int] = []

    def handle(ctx: None, item: int) -> None:
        release.wait(10)
        seen.append(item)

    inbox: queue.Queue[int] = queue.Queue(8)
    stage: Stage[None, int] = Stage("match", inbox, handle, threads=2)
    stage.start()
    try:
        for i in range(4):
            inbox.put(i)
        assert _until(lambda: stage.describe()["busy"] == 2)
        d = stage.describe()
        assert d == {"threads": 2, "alive": 2, "busy": 2, "restarts": 0, "queued": 2}
        stage.close()
        assert not stage.drained  # work still queued
        release.set()
        assert _until(lambda: stage.drained)
        assert sorted(seen) == [0, 1, 2, 3]
        assert stage.supervise() == 0 and stage.describe()["alive"] == 0  # ended normally: left ended
        assert stage.restarts == 0
        # Work put back while closing (after the threads ended): one thread is revived to finish it.
        inbox.put(9)
        assert stage.supervise() == 0
        assert _until(lambda: seen[-1:] == [9])
        assert _until(lambda: stage.drained)
    finally:
        release.set()
        stage.close()


class FakePublisher:
    """What PublisherSlot sees of a publisher: started, alive or dead with an error."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.started = 0
        self.alive = False
        self.error: BaseException | None = None
        self.stopped = False
        self.notified = 0

    def start(self) -> None:
        self.started += 1
        self.alive = True

    def notify(self) -> None:
        self.notified += 1

    def stop(self) -> None:
        self.stopped = True


def test_a_publisher_whose_thread_died_is_replaced_unless_stopping(caplog: pytest.LogCaptureFixture) -> None:
    built: list[FakePublisher] = []

    def build() -> FakePublisher:
        built.append(FakePublisher(len(built)))
        return built[-1]

    metrics = Metrics()
    slot = supervisor.PublisherSlot(cast(Any, build), metrics)
    assert len(built) == 1 and built[0].started == 0  # built at once, started by start()
    slot.start()
    slot.supervise(False)
    assert len(built) == 1  # alive: left alone
    built[0].alive, built[0].error = False, ConnectionError("broker gone")
    slot.supervise(True)
    assert len(built) == 1  # stopping: a dead publisher is not replaced
    slot.supervise(False)
    assert len(built) == 2 and slot.current is built[1] and built[1].started == 1
    assert metrics.get("edgeface_stage_restarts_total", stage="publisher") == 1
    (rec,) = [r for r in caplog.records if r.getMessage() == "stage.restarted"]
    assert rec.edgeface_fields == {"stage": "publisher", "error": "broker gone"}  # type: ignore[attr-defined]
    slot.notify()
    slot.stop()
    assert built[1].notified == 1 and built[1].stopped and not built[0].stopped


class FakeSyncer:
    """Syncer.run as the sync thread calls it: ends (or raises) on its own; trigger() recorded."""

    def __init__(self) -> None:
        self.runs = 0
        self.triggers: list[dict[str, Any] | None] = []
        self.stop_seen: list[threading.Event] = []

    def run(self, stop: threading.Event) -> None:
        self.runs += 1
        self.stop_seen.append(stop)
        if self.runs == 1:
            raise RuntimeError("gallery server unreachable")

    def trigger(self, announcement: dict[str, Any] | None = None) -> None:
        self.triggers.append(announcement)


def test_the_sync_thread_is_started_again_when_it_ends_unless_stopping(caplog: pytest.LogCaptureFixture) -> None:
    syncer = FakeSyncer()
    metrics = Metrics()
    sync = supervisor.SyncThread(cast(Any, syncer), metrics)
    sync.supervise(False)
    assert syncer.runs == 0  # never started: nothing to restart
    sync.start()
    assert sync._thread is not None and sync._thread.name == "edgeface-sync" and sync._thread.daemon
    assert _until(lambda: syncer.runs == 1 and sync._thread is not None and not sync._thread.is_alive())
    (rec,) = [r for r in caplog.records if r.getMessage() == "gallery.sync.crashed"]
    assert rec.edgeface_fields == {"error": "gallery server unreachable"}  # type: ignore[attr-defined]
    sync.supervise(True)
    assert syncer.runs == 1  # stopping: not restarted
    sync.supervise(False)
    assert _until(lambda: syncer.runs == 2)  # the crash did not take the unit down: started again
    assert metrics.get("edgeface_stage_restarts_total", stage="sync") == 1
    sync.trigger({"gallery_version": 3})
    sync.trigger()
    assert syncer.triggers == [{"gallery_version": 3}, None]
    assert not syncer.stop_seen[0].is_set()
    sync.stop()
    assert syncer.stop_seen[0].is_set() and syncer.stop_seen[0] is syncer.stop_seen[1]


def test_the_supervisor_supervises_everything_and_counts_restarts() -> None:
    calls: list[str] = []

    class Part:
        def __init__(self, name: str, restarts: int = 0) -> None:
            self.name, self.restarts = name, restarts

        def supervise(self, *stopping: bool) -> None:
            calls.append(f"{self.name}{list(stopping)}")

    stop = threading.Event()
    capture = Part("capture", restarts=2)
    sup = Supervisor(
        cast(Any, [Part("infer", 3), Part("match", 1)]),
        cast(Any, capture),
        publisher=cast(Any, Part("publisher")),
        sync=cast(Any, Part("sync")),
        stop=stop,
        stall_s=5.0,
    )
    sup.supervise()
    stop.set()
    sup.supervise()
    assert calls == [
        "infer[]", "match[]", "capture[]", "publisher[False]", "sync[False]",
        "infer[]", "match[]", "capture[]", "publisher[True]", "sync[True]",
    ]  # fmt: skip
    assert sup.restarts == 6 and sup.stall_s == 5.0
    calls.clear()
    Supervisor([], cast(Any, capture), publisher=None, sync=None, stop=stop, stall_s=1.0).supervise()
    assert calls == ["capture[]"]


def test_a_watchdog_unhealthy_from_the_start_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    notifier = RecordingNotifier(watchdog_s=0.3)
    dog = Watchdog(notifier, lambda: "capture silent for 31 s")
    dog.feed()
    dog.feed()
    assert notifier.pings == 0
    assert [r.getMessage() for r in caplog.records] == ["watchdog.withheld"]


def _dead_thread() -> threading.Thread:
    t = threading.Thread(target=lambda: None)
    t.start()
    t.join()
    return t


def test_supervise_looks_at_every_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    """Slots set by hand on a clock the test moves: one slot waiting out its backoff, or one that ended
    normally, does not keep the supervisor from restarting the next one; due exactly when the backoff ends."""
    t = [1024.0]
    monkeypatch.setattr(stages_mod, "time", types.SimpleNamespace(monotonic=lambda: t[0]))
    inbox: queue.Queue[int] = queue.Queue(4)
    stage: Stage[None, int] = Stage("match", inbox, lambda ctx, item: None, threads=2)
    s0, s1 = stage.slots
    try:
        s0.thread, s0.error = _dead_thread(), RuntimeError("crash")
        assert stage.supervise() == 1  # s0 restarted; its next restart not before 1024.2; s1 never started
        s0.thread, s0.error = _dead_thread(), RuntimeError("crash again")
        s1.thread, s1.error = _dead_thread(), RuntimeError("crash")
        t[0] = 1024.1
        assert stage.supervise() == 1  # s0 waits, s1 restarted all the same
        s0.thread, s0.error = _dead_thread(), RuntimeError("crash again")
        t[0] = 1024.0 + 0.2  # exactly when s0's backoff ends
        assert stage.supervise() == 1
        s0.thread, s0.error = _dead_thread(), RuntimeError("crash")
        s1.thread, s1.error = _dead_thread(), RuntimeError("crash")
        t[0] = 2048.0
        assert stage.supervise() == 2  # both counted
        stage.close()
        s0.thread, s0.error = _dead_thread(), None  # ended normally while closing with nothing queued
        s1.thread, s1.error = _dead_thread(), RuntimeError("crash")
        t[0] = 4096.0
        assert stage.supervise() == 1
        assert stage.restarts == 6
    finally:
        stage.close()


def test_an_item_put_back_into_a_full_inbox_waits_for_room(caplog: pytest.LogCaptureFixture) -> None:
    """The crashed thread's item goes back even when the inbox is full: the supervisor starts the
    replacement, then waits (and says so) until a thread of the stage makes room."""
    gate = threading.Event()
    setups: list[int] = []
    seen: list[str] = []
    crashed: list[str] = []

    def setup() -> None:
        setups.append(1)
        if len(setups) > 1:  # the replacement is held at its start until the supervisor is seen waiting
            gate.wait(20)

    def handle(ctx: None, item: str) -> None:
        if item == "crash" and "crash" not in crashed:
            crashed.append(item)
            raise RuntimeError("crash")
        seen.append(item)

    inbox: queue.Queue[str] = queue.Queue(1)
    stage: Stage[None, str] = Stage("infer", inbox, handle, threads=1, setup=setup)
    stage.start()

    def waiting() -> bool:
        return "stage.requeue_waiting" in [r.getMessage() for r in caplog.records]

    def make_room() -> None:
        _until(waiting, 20)
        gate.set()

    try:
        inbox.put("crash")
        assert _until(lambda: stage.slots[0].error is not None)
        inbox.put("queued")  # the inbox is full
        helper = threading.Thread(target=make_room, daemon=True)
        helper.start()
        assert stage.supervise() == 1  # returns once the item is back in the inbox
        helper.join(30)
        (rec,) = [r for r in caplog.records if r.getMessage() == "stage.requeue_waiting"][:1]
        assert rec.edgeface_fields == {"stage": "infer"}  # type: ignore[attr-defined]
    finally:
        gate.set()
        stage.close()
    assert _until(lambda: stage.drained)
    assert seen == ["queued", "crash"]  # the crashed item too, on its second try, after what was waiting


def test_a_single_thread_stage_that_crashes_with_a_full_inbox_is_restarted_before_its_item_goes_back() -> None:
    """The match and sink stages have one thread: when it crashes while its inbox is full, only its
    replacement can make room for the crashed item, so the supervisor must start the replacement first (it
    used to wait for room first, and hung for good)."""
    seen: list[str] = []
    crashed: list[str] = []

    def handle(ctx: None, item: str) -> None:
        if item == "crash" and not crashed:
            crashed.append(item)
            raise RuntimeError("crash")
        seen.append(item)

    inbox: queue.Queue[str] = queue.Queue(1)
    stage: Stage[None, str] = Stage("sink", inbox, handle, threads=1)
    stage.start()
    try:
        inbox.put("crash")
        assert _until(lambda: stage.slots[0].error is not None)
        inbox.put("queued")  # the inbox is full, and its only thread is dead
        result: list[int] = []
        supervisor = threading.Thread(target=lambda: result.append(stage.supervise()), daemon=True)
        supervisor.start()
        supervisor.join(20)
        assert not supervisor.is_alive(), "the supervisor waits for room that only the replacement can make"
        assert result == [1]
        assert _until(lambda: sorted(seen) == ["crash", "queued"])  # the crashed item too, on its second try
    finally:
        stage.close()
    assert _until(lambda: stage.drained)
