"""The quality gate: which detected faces are good enough to embed, and why the others are not.

A refused face is kept with its reasons, never silently dropped: the reviewer and the benchmarks
see what was refused and why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from .config import QualityConfig
from .detection import Face
from .pose import estimate_pose

SHARPNESS_WIDTH = 112  # faces are rescaled to this width before measuring sharpness


@dataclass(frozen=True)
class Refusal:
    check: str  # "score", "size", "sharpness", "yaw", "pitch"
    value: float
    limit: float

    def __str__(self) -> str:
        op = ">" if self.check in ("yaw", "pitch") else "<"
        return f"{self.check} {self.value:.3g} {op} limit {self.limit:.3g}"


@dataclass(frozen=True)
class Quality:
    score: float
    size_px: float
    sharpness: float
    yaw: float
    pitch: float
    roll: float
    refusals: tuple[Refusal, ...]

    @property
    def passed(self) -> bool:
        return not self.refusals

    @property
    def reasons(self) -> list[str]:
        return [str(r) for r in self.refusals]

    def to_dict(self) -> dict[str, Any]:
        def num(v: float, nd: int = 1) -> float | None:
            return None if math.isnan(v) else round(float(v), nd)

        return {
            "passed": self.passed,
            "reasons": self.reasons,
            "score": round(self.score, 4),
            "size_px": num(self.size_px),
            "sharpness": num(self.sharpness),
            "yaw": num(self.yaw),
            "pitch": num(self.pitch),
            "roll": num(self.roll),
        }


def sharpness(image: np.ndarray, face: Face) -> float:
    """Variance of the Laplacian over the face box, rescaled to a fixed width (blur measure)."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = face.box
    x0, y0 = max(0, int(math.floor(x0))), max(0, int(math.floor(y0)))
    x1, y1 = min(w, int(math.ceil(x1))), min(h, int(math.ceil(y1)))
    if x1 - x0 < 4 or y1 - y0 < 4:
        return 0.0
    crop = cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY)
    scale = SHARPNESS_WIDTH / crop.shape[1]
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    crop = cv2.resize(crop, (SHARPNESS_WIDTH, max(4, round(crop.shape[0] * scale))), interpolation=interp)
    return float(cv2.Laplacian(crop, cv2.CV_64F).var())


def assess(image: np.ndarray, face: Face, limits: QualityConfig | None = None) -> Quality:
    """Measure a face and check it against the limits; every failed check is recorded."""
    limits = limits or QualityConfig()
    pose = estimate_pose(face)
    size = max(face.width, face.height)
    sharp = sharpness(image, face)
    refusals = []
    if face.score < limits.min_score:
        refusals.append(Refusal("score", face.score, limits.min_score))
    if size < limits.min_face_px:
        refusals.append(Refusal("size", size, limits.min_face_px))
    if sharp < limits.min_sharpness:
        refusals.append(Refusal("sharpness", sharp, limits.min_sharpness))
    if not math.isnan(pose.yaw) and abs(pose.yaw) > limits.max_yaw:
        refusals.append(Refusal("yaw", abs(pose.yaw), limits.max_yaw))
    if not math.isnan(pose.pitch) and abs(pose.pitch) > limits.max_pitch:
        refusals.append(Refusal("pitch", abs(pose.pitch), limits.max_pitch))
    return Quality(
        score=face.score,
        size_px=size,
        sharpness=sharp,
        yaw=pose.yaw,
        pitch=pose.pitch,
        roll=pose.roll,
        refusals=tuple(refusals),
    )
