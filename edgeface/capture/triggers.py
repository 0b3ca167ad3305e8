"""Trigger mode: what makes a camera take a picture when it does not stream continuously.

Every trigger calls :meth:`TriggerHub.fire`; the capture loop waits on :meth:`TriggerHub.wait`.
Triggers: the MQTT ``capture`` command (the daemon's publisher calls ``fire``), SIGUSR1 (``edgeface
trigger`` or ``systemctl kill -s USR1 edgeface``), Enter on the terminal, and a push button on a
Raspberry Pi GPIO pin through gpiozero (optional: ``apt install python3-gpiozero``).
"""

from __future__ import annotations

import importlib
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, TextIO

from ..errors import CaptureError
from ..logs import get_logger

log = get_logger(__name__)

MAX_PENDING = 32  # triggers fired faster than frames can be taken are bounded, not queued forever


class TriggerHub:
    """Collects trigger events from any thread; the capture loop takes them one at a time."""

    def __init__(self) -> None:
        self._events: deque[str] = deque(maxlen=MAX_PENDING)
        self._cond = threading.Condition()
        self.fired = 0
        self._closers: list[Callable[[], None]] = []

    def fire(self, reason: str) -> None:
        with self._cond:
            self._events.append(reason)
            self.fired += 1
            self._cond.notify_all()

    def wait(self, timeout: float) -> str | None:
        """The next trigger's reason, or None if none fired within ``timeout`` seconds."""
        with self._cond:
            if not self._events:
                self._cond.wait(timeout)
            return self._events.popleft() if self._events else None

    # -- trigger sources ---------------------------------------------------------------------------

    def add_signal(self, signum: int = signal.SIGUSR1) -> None:
        """Fire on a signal (call from the main thread, as Python requires for signal handlers)."""
        previous = signal.signal(signum, lambda s, f: self.fire("signal"))

        def restore() -> None:
            signal.signal(signum, previous)

        self._closers.append(restore)

    def add_key(self, stream: TextIO | None = None) -> None:
        """Fire on each line (Enter) read from ``stream`` (stdin); ends quietly at end of file."""
        stream = stream or sys.stdin

        def loop() -> None:
            for _ in iter(stream.readline, ""):
                self.fire("key")

        threading.Thread(target=loop, name="edgeface-trigger-key", daemon=True).start()

    def add_gpio(self, pin: int, bounce_s: float = 0.05) -> None:
        """Fire when a button between ``pin`` (BCM numbering) and ground is pressed."""
        try:
            gpiozero = importlib.import_module("gpiozero")
        except ImportError as e:
            raise CaptureError(
                f"capture.triggers includes 'gpio', which needs gpiozero: `sudo apt install python3-gpiozero` on "
                f"Raspberry Pi OS (virtual environment with --system-site-packages). ({e})"
            ) from None
        try:
            button: Any = gpiozero.Button(pin, pull_up=True, bounce_time=bounce_s)
        except Exception as e:  # gpiozero raises its own hierarchy (BadPinFactory, GPIOPinInUse, ...)
            raise CaptureError(
                f"GPIO button on pin {pin} (capture.gpio_pin) cannot be used: {e}. Is the service "
                "user in group 'gpio', and /dev/gpiochip* allowed?"
            ) from e
        button.when_pressed = lambda *a: self.fire("gpio")
        self._closers.append(button.close)

    def close(self) -> None:
        for close in reversed(self._closers):
            close()
        self._closers.clear()


def install(hub: TriggerHub, triggers: tuple[str, ...], gpio_pin: int, *, main_thread: bool = True) -> list[str]:
    """Set up the configured trigger sources on ``hub``; returns the ones installed here ('command' is
    wired by the daemon to its MQTT commands)."""
    done = []
    for name in triggers:
        if name == "signal" and main_thread:
            hub.add_signal()
        elif name == "key":
            hub.add_key()
        elif name == "gpio":
            hub.add_gpio(gpio_pin)
        elif name == "command":
            pass
        else:
            continue
        done.append(name)
    log.info("capture.triggers", triggers=done)
    return done
