"""The one interface every capture source implements, and the frame it produces.

A source is opened, read until it ends or the daemon stops, and closed. ``read`` returns the next
:class:`Frame`, ``None`` when none came within the timeout, or raises :class:`EndOfSource` (a video
file or a batch folder is finished) or :class:`~edgeface.errors.SourceUnavailable` (the camera went
away: the daemon closes the source and reopens it with backoff). ``done`` tells the source a frame's
outcome once everything it produced is stored, so a source with durable progress (the folder) can
record it: that is what makes "never twice, never missed" hold across restarts.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np


class EndOfSource(Exception):
    """The source has nothing more to give (end of a video file, a ``once`` folder fully processed)."""


@dataclass
class Frame:
    """One picture to process. ``image`` may be None when ``path`` is set: the worker decodes the file
    (in parallel, and with the strict decoder that refuses truncated files)."""

    source: str  # the source's name, carried in results
    key: str  # unique within the source; stable for a file (path, size, mtime), so results get stable ids
    captured_at: float  # Unix time the picture was taken (a file: its modification time)
    seq: int  # order of capture within this run
    image: np.ndarray | None = None  # HxWx3 uint8 RGB
    path: Path | None = None  # the file it comes from (folder source)
    attempts: int = 0  # how many times processing it crashed a stage (see run.max_attempts)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """What became of a frame: ``status`` is 'done' (processed; ``results`` lists the ids it contributed
    to), 'unreadable' (the file is not a decodable image) or 'failed' (processing crashed too often)."""

    status: str
    faces: int = 0
    results: tuple[str, ...] = ()
    error: str = ""


class Source(ABC):
    """A capture source. Subclasses set ``kind`` and ``live`` and implement open/read/close."""

    kind: ClassVar[str] = ""
    #: Frames happen whether or not they are read (a camera): when the pipeline is behind, the oldest
    #: queued frame is dropped. Not live (files): the source waits, nothing is dropped.
    live: bool = True

    def __init__(self, name: str) -> None:
        self.name = name
        self._seq = 0

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    @abstractmethod
    def open(self) -> None:
        """Acquire the device. Raises SourceUnavailable (retried) or CaptureError (configuration)."""

    @abstractmethod
    def read(self, timeout: float) -> Frame | None:
        """The next frame, None if none arrived within ``timeout`` seconds; EndOfSource at the end."""

    @abstractmethod
    def close(self) -> None:
        """Release the device. Safe to call twice, and after a failed open."""

    def done(self, frame: Frame, outcome: Outcome) -> None:  # noqa: B027 - optional hook, a no-op by default
        """``frame`` is fully processed and its results are stored. Sources with durable progress record it."""

    def shutdown(self) -> None:
        """The run is over and every frame's ``done`` was called: release everything (default: close)."""
        self.close()

    def describe(self) -> dict[str, Any]:
        """A few facts for the status view."""
        return {"kind": self.kind, "name": self.name, "live": self.live}


def now() -> float:
    return time.time()
