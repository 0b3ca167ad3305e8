"""The face a detector finds: box, keypoints, score and the rotation it was found at.

Every stage after detection (quality, alignment, landmarks, the daemon's results) takes a
:class:`Face`; it lives here, apart from any one detector, so those stages do not depend on BlazeFace.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face, in pixel coordinates of the image it was found in."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    keypoints: np.ndarray  # (K, 2) float32, in the order of ``keypoint_names``
    keypoint_names: tuple[str, ...]
    score: float
    rotation: int  # degrees clockwise the image was turned for the detector to find this face
    landmarks: np.ndarray | None = None  # (N, 2) dense landmarks from a landmark model, if refined

    def keypoint(self, name: str) -> tuple[float, float]:
        try:
            x, y = self.keypoints[self.keypoint_names.index(name)]
        except ValueError:
            raise KeyError(f"this detector gives no keypoint {name!r}; it gives {self.keypoint_names}") from None
        return float(x), float(y)

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": [round(float(v), 1) for v in self.box],
            "score": round(self.score, 4),
            "rotation": self.rotation,
            "keypoints": {
                n: [round(float(x), 1), round(float(y), 1)]
                for n, (x, y) in zip(self.keypoint_names, self.keypoints, strict=True)
            },
        }
