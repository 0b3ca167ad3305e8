"""Dense face landmarks (MediaPipe Face Mesh, 468 points) to refine alignment.

BlazeFace's six keypoints are coarse (eye centres, nose tip); the mesh gives the eye corners and the
base of the nose, the points dlib's own chips are defined on, so an embedder trained on dlib chips
sees faces aligned the way it learnt them. The crop follows MediaPipe's detection-to-ROI recipe: the
detection box centre, 1.5 times its longer side, turned so the eyes are level.
"""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

from ...errors import ModelError
from ..cards import ModelCard
from ..faces import Face
from ..runtime import TFLiteModel
from ..settings import RuntimeConfig


class FaceMesh:
    """Runs a landmark model described by its card. Owns its interpreter (one per thread)."""

    def __init__(self, card: ModelCard, runtime: RuntimeConfig | None = None, *, verify: bool = True) -> None:
        if card.landmarks is None:
            raise ModelError(f"model {card.id} is a {card.task}, not a landmark model")
        spec = card.landmarks
        self.points_name = spec.points
        self.presence_name = spec.presence
        self.count = spec.count
        self.roi_scale = spec.roi_scale
        self.min_presence = spec.min_presence
        self.card = card
        self.model = TFLiteModel(card.read_model(verify), runtime, name=card.id)
        self._pts = self.model.output_index(self.points_name)
        self._presence = self.model.output_index(self.presence_name)

    def _roi(self, face: Face) -> np.ndarray:
        """The 2x3 transform from image pixels to the model's input crop."""
        size = self.card.input.width
        cx, cy = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
        side = self.roi_scale * max(face.width, face.height)
        try:
            (x0, y0), (x1, y1) = face.keypoint("right_eye"), face.keypoint("left_eye")
            angle = math.atan2(y1 - y0, x1 - x0)
        except KeyError:
            angle = 0.0
        c, s = math.cos(-angle), math.sin(-angle)
        k = size / max(side, 1e-6)
        rot = np.array([[c, -s], [s, c]]) * k
        m = np.empty((2, 3))
        m[:, :2] = rot
        m[:, 2] = np.array([size / 2, size / 2]) - rot @ np.array([cx, cy])
        return m

    def landmarks(self, image: np.ndarray, face: Face) -> tuple[np.ndarray, float]:
        """The (count, 2) landmarks in image pixels and the model's face-presence probability."""
        inp = self.card.input
        m = self._roi(face)
        crop = cv2.warpAffine(
            image, m, (inp.width, inp.height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
        )
        if inp.colour == "BGR":
            crop = crop[:, :, ::-1]
        tensor = np.multiply(crop, np.float32(inp.scale), dtype=np.float32)[None]  # one pass, no float copies
        if inp.offset:
            tensor += np.float32(inp.offset)
        outputs = self.model.run(tensor)
        pts = outputs[self._pts].reshape(-1, 3)[: self.count, :2].astype(np.float64)
        presence = 1.0 / (1.0 + math.exp(-float(np.clip(outputs[self._presence].ravel()[0], -80, 80))))
        inv = cv2.invertAffineTransform(m)
        image_pts = pts @ inv[:, :2].T + inv[:, 2]
        return image_pts.astype(np.float32), presence

    def refine(self, image: np.ndarray, face: Face) -> Face:
        """``face`` with dense landmarks attached (unchanged when the model sees no face there)."""
        pts, presence = self.landmarks(image, face)
        if presence < self.min_presence:
            return face
        return dataclasses.replace(face, landmarks=pts)
