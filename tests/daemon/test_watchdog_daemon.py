"""The real daemon withholds systemd's watchdog pings while a stage is stuck on one frame, and feeds it
again once the stage moves (the rule in daemon/supervisor.py, checked through the wiring of service.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from sample_photos import SAMPLE_PHOTOS

from edgeface.capture import Frame, Source
from edgeface.config import Config
from edgeface.daemon import Daemon
from edgeface.daemon.sdnotify import Notifier
from edgeface.daemon.supervisor import Supervisor
from edgeface.vision.engine import Engine
from edgeface.vision.imageio import load_image


class RecordingNotifier(Notifier):
    """systemd as the daemon sees it: a watchdog of ``watchdog_s``; pings counted instead of sent."""

    def __init__(self, watchdog_s: float) -> None:
        super().__init__(env={})
        self.watchdog_s = watchdog_s
        self.pings = 0

    def watchdog(self) -> bool:
        self.pings += 1
        return True


class Camera(Source):
    """A live camera that always has the same face."""

    kind = "fake"

    def __init__(self, image: np.ndarray) -> None:
        super().__init__("fakecam")
        self.image = image

    def open(self) -> None:
        pass

    def read(self, timeout: float) -> Frame | None:
        time.sleep(0.05)
        seq = self.next_seq()
        return Frame(source=self.name, key=f"fake:{seq}", captured_at=time.time(), seq=seq, image=self.image.copy())

    def close(self) -> None:
        pass


def _wait(cond: Callable[[], bool], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.02)
    return cond()


def test_watchdog_withheld_while_a_stage_is_stuck_and_fed_after(
    make_unit: Callable[..., tuple[Config, Any]], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    config, _ = make_unit(run={"stall_s": 1.0, "frame_queue": 2})
    gate = threading.Event()
    gate.set()
    real = Engine.detect

    def gated(self: Engine, image: np.ndarray) -> Any:
        gate.wait(60)  # cleared: the stage hangs on this frame, as a wedged interpreter would
        return real(self, image)

    verdicts: list[str | None] = []
    real_health = Supervisor.health

    def health(self: Supervisor) -> str | None:
        why = real_health(self)
        verdicts.append(why)
        return why

    monkeypatch.setattr(Engine, "detect", gated)
    monkeypatch.setattr(Supervisor, "health", health)
    d = Daemon(config, source=Camera(load_image(SAMPLE_PHOTOS[0])), install_signals=False)
    notifier = d.notifier = RecordingNotifier(watchdog_s=0.3)
    t = threading.Thread(target=d.run)
    t.start()
    try:
        assert d.running.wait(60)
        assert _wait(lambda: notifier.pings >= 2)  # fed while every stage makes progress
        gate.clear()
        assert _wait(lambda: "watchdog.withheld" in [r.getMessage() for r in caplog.records]), verdicts[-5:]
        pings, asked = notifier.pings, len(verdicts)
        assert _wait(lambda: len(verdicts) >= asked + 5)  # health asked again and again while stuck...
        assert notifier.pings == pings  # ...and not one ping
        assert all(v is not None and "busy on one item" in v for v in verdicts[asked:]), verdicts[asked:]
        gate.set()
        assert _wait(lambda: notifier.pings > pings)  # the stage moved: fed again
    finally:
        gate.set()
        d.request_stop()
        t.join(60)
    assert not t.is_alive()
