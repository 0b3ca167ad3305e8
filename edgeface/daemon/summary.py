"""What a run did: :class:`Summary` (printed by ``edgeface run`` at exit, read by tests and benchmarks),
kept by a :class:`Tally` that the capture thread and the stage threads update under one lock."""

from __future__ import annotations

import dataclasses
import threading
from collections import deque
from typing import Any

RECENT = 200  # results remembered for the summary (the demo prints them)


@dataclasses.dataclass
class Summary:
    """What a run did (printed by ``edgeface run`` at exit, used by tests and the e2e benchmark)."""

    frames: int = 0
    faces: int = 0
    results: dict[str, int] = dataclasses.field(default_factory=dict)
    merged: int = 0
    unreadable: int = 0
    failed: int = 0
    dropped: int = 0
    not_stored: int = 0
    stage_restarts: int = 0
    capture_reopens: int = 0
    outbox_pending: int = 0
    recent: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Tally:
    """The run's :class:`Summary`, updated from several threads (each method takes the lock)."""

    def __init__(self) -> None:
        self.summary = Summary()
        self._recent: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self._lock = threading.Lock()

    def dropped(self) -> None:
        with self._lock:
            self.summary.dropped += 1

    def frame(self, faces: int, status: str) -> None:
        """A frame is complete ('done', 'unreadable' or 'failed') with ``faces`` faces."""
        with self._lock:
            self.summary.frames += 1
            self.summary.faces += faces
            if status == "unreadable":
                self.summary.unreadable += 1
            elif status == "failed":
                self.summary.failed += 1

    def emitted(self, merged: int, decision: str | None) -> None:
        """A track became a result (``decision``; None: the outbox refused it) of ``merged`` + 1 faces."""
        with self._lock:
            self.summary.merged += merged
            if decision is not None:
                self.summary.results[decision] = self.summary.results.get(decision, 0) + 1

    def not_stored(self) -> None:
        with self._lock:
            self.summary.not_stored += 1

    def remember(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._recent.append(record)

    def snapshot(self) -> Summary:
        """A copy for the status document (its ``recent`` left out)."""
        with self._lock:
            return dataclasses.replace(self.summary, results=dict(self.summary.results), recent=[])

    def finish(self, *, outbox_pending: int, stage_restarts: int, capture_reopens: int) -> None:
        """The run is over: the figures only known at the end, and the recent results."""
        with self._lock:
            self.summary.outbox_pending = outbox_pending
            self.summary.stage_restarts = stage_restarts
            self.summary.capture_reopens = capture_reopens
            self.summary.recent = list(self._recent)
