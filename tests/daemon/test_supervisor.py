"""Supervision: systemd's watchdog is fed only while every stage makes progress, and a stuck stage or a
silent capture thread is named."""

from __future__ import annotations

import queue
import threading
import time
import types
from typing import cast

import pytest

from edgeface.daemon import supervisor
from edgeface.daemon.capture_loop import CaptureLoop
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
        capture = cast(CaptureLoop, types.SimpleNamespace(silent=lambda stall_s: "capture silent for 99 s"))
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
