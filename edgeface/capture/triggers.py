"""Trigger mode: what makes a camera take a picture when it does not stream continuously.

Every trigger calls :meth:`TriggerHub.fire`; the capture loop waits on :meth:`TriggerHub.wait`.
Triggers: the MQTT ``capture`` command (the daemon's publisher calls ``fire``), SIGUSR1 (``edgeface
trigger`` or ``systemctl kill -s USR1 edgeface``), Enter on the terminal, and a push button on a
Raspberry Pi GPIO pin through gpiozero (optional: ``apt install python3-gpiozero``).

A trigger may carry a case tag (:class:`~edgeface.capture.tags.CaseTag`): the MQTT command's
``args.tag``, or ``edgeface trigger --tag``. A signal carries no data, so ``edgeface trigger`` first
writes its tag as a request file in ``<run.state_dir>/triggers/`` (:func:`write_request`) and then
signals; the daemon's handler takes every waiting request, oldest first, one trigger each (signals
sent close together may arrive as one; the files do not). A request older than
:data:`REQUEST_MAX_AGE_S` is dropped, logged: a stale tag must not label a later capture.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ..errors import CaptureError
from ..logs import get_logger
from .tags import CaseTag, TagError, given_tag

log = get_logger(__name__)

MAX_PENDING = 32  # triggers fired faster than frames can be taken are bounded, not queued forever
REQUEST_MAX_AGE_S = 60.0


@dataclass(frozen=True)
class Trigger:
    """One trigger: why it fired ('command', 'signal', 'key', 'gpio') and the case tag it carries."""

    reason: str
    tag: CaseTag | None = None


class TriggerHub:
    """Collects trigger events from any thread; the capture loop takes them one at a time.
    ``request_dir`` is where ``edgeface trigger --tag`` leaves its tags (see the module docstring)."""

    def __init__(self, request_dir: Path | None = None) -> None:
        self._events: deque[Trigger] = deque(maxlen=MAX_PENDING)
        self._cond = threading.Condition()
        self.fired = 0
        self.request_dir = request_dir
        self._closers: list[Callable[[], None]] = []

    def fire(self, reason: str, tag: CaseTag | None = None) -> None:
        with self._cond:
            self._events.append(Trigger(reason, tag))
            self.fired += 1
            self._cond.notify_all()

    def next(self, timeout: float) -> Trigger | None:
        """The next trigger, or None if none fired within ``timeout`` seconds."""
        with self._cond:
            if not self._events:
                self._cond.wait(timeout)
            return self._events.popleft() if self._events else None

    def wait(self, timeout: float) -> str | None:
        """The next trigger's reason, or None if none fired within ``timeout`` seconds."""
        t = self.next(timeout)
        return t.reason if t is not None else None

    def on_signal(self) -> None:
        """A trigger signal arrived: one trigger per waiting request (with its tag), or one without a tag."""
        requests = take_requests(self.request_dir) if self.request_dir is not None else []
        for tag in requests or [None]:
            self.fire("signal", tag)

    # -- trigger sources ---------------------------------------------------------------------------

    def add_signal(self, signum: int = signal.SIGUSR1) -> None:
        """Fire on a signal (call from the main thread, as Python requires for signal handlers)."""
        previous = signal.signal(signum, lambda s, f: self.on_signal())

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


# -- tags for `edgeface trigger --tag`: request files beside the daemon's state -----------------------


def request_dir(state_dir: Path) -> Path:
    """Where trigger requests wait for the daemon (``<run.state_dir>/triggers``)."""
    return Path(state_dir) / "triggers"


def write_request(folder: Path, tag: str | None) -> Path:
    """Leave a request for the next trigger signal (written whole, then renamed: never read half-way).
    :class:`~edgeface.capture.tags.TagError` if ``tag`` is unusable; OSError if ``folder`` is not writable."""
    case = given_tag(tag, "trigger")
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}-{os.getpid()}"
    tmp, final = folder / f".{name}.tmp", folder / f"{name}.json"
    tmp.write_text(json.dumps({"tag": case.tag if case else None, "at": time.time()}), encoding="utf-8")
    os.replace(tmp, final)
    return final


def take_requests(folder: Path) -> list[CaseTag | None]:
    """Every waiting request, oldest first, removed as it is taken; stale or unreadable ones are dropped."""
    try:
        names = sorted(p for p in os.listdir(folder) if p.endswith(".json") and not p.startswith("."))
    except OSError:
        return []
    out: list[CaseTag | None] = []
    for name in names:
        path = folder / name
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            path.unlink()
            age = time.time() - float(doc["at"])
            if age > REQUEST_MAX_AGE_S:
                log.warning("capture.trigger_request_stale", file=name, age_s=round(age), tag=doc.get("tag"))
                continue
            out.append(given_tag(doc.get("tag"), "trigger"))
        except (OSError, ValueError, KeyError, TypeError, TagError) as e:
            log.warning("capture.trigger_request_unreadable", file=name, error=str(e))
            try:
                path.unlink()
            except OSError:
                pass
    return out
