"""What travels through the pipeline: a frame's bookkeeping (:class:`FrameJob`) and its faces
(:class:`Observation`), plus the rule that picks the best capture of a person."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..capture.base import Frame, Outcome
from ..vision.faces import Face
from ..vision.quality import Quality

if TYPE_CHECKING:
    from ..gallery.match import Decision


@dataclass(eq=False)
class FrameJob:
    """A frame and what became of it. Complete once every face's track has been emitted (stored)."""

    frame: Frame
    status: str = "done"  # 'done', 'unreadable', 'failed'
    faces: int = 0
    open_faces: int = 0  # faces whose result is not stored yet
    routed: bool = False  # every face has reached the tracker
    results: list[str] = field(default_factory=list)
    error: str = ""
    completed: bool = False  # the source was told (once)

    @property
    def complete(self) -> bool:
        return self.routed and self.open_faces == 0

    def outcome(self) -> Outcome:
        return Outcome(self.status, self.faces, tuple(dict.fromkeys(self.results)), self.error)


@dataclass(eq=False)
class Observation:
    """One face in one frame, as it moves from inference to matching to the tracker."""

    job: FrameJob
    index: int  # position of the face in its frame (detector order)
    face: Face
    quality: Quality
    embedding: np.ndarray | None  # None: refused by the quality gate, not embedded
    crop: np.ndarray | None = None  # small RGB crop (payload crop, retention 'crop')
    image: np.ndarray | None = None  # the whole frame, only when retention.save == 'frame'
    decision: Decision | None = None  # set by the match stage (None: no gallery installed)
    gallery_version: int | None = None
    threshold: float | None = None
    placed: bool = False  # handed to the tracker (a retried sink item skips it)

    @property
    def source(self) -> str:
        return self.job.frame.source

    @property
    def captured_at(self) -> float:
        return self.job.frame.captured_at

    @property
    def rank(self) -> float:
        return capture_rank(self.quality)


def _finite(v: float, default: float = 0.0) -> float:
    return default if v is None or math.isnan(v) else float(v)


def quality_weight(q: Quality) -> float:
    """The quality gate's figures as one number in 0..1: detector score x size x sharpness x frontality
    (size saturates at 160 px, sharpness at 200). Ranks captures and weighs faces in a fused template."""
    size = min(1.0, _finite(q.size_px) / 160.0)
    sharp = min(1.0, _finite(q.sharpness) / 200.0)
    pose = math.cos(math.radians(min(abs(_finite(q.yaw)), 89.0))) * math.cos(
        math.radians(min(abs(_finite(q.pitch)), 89.0))
    )
    return max(0.0, float(q.score) * size * sharp * pose)


def capture_rank(q: Quality) -> float:
    """Higher is a better capture of a face: passed beats refused, then :func:`quality_weight`."""
    return (1.0 if q.passed else 0.0) + quality_weight(q)


@dataclass(eq=False)
class FrameFaces:
    """Message from inference to matching: a frame's faces (maybe none)."""

    job: FrameJob
    observations: list[Observation]
