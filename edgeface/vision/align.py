"""Alignment: a similarity transform that puts a face's keypoints on the embedder's chip template.

The template (chip size and where each keypoint belongs) comes from the embedder's model card. Any
in-plane rotation of the face is undone by the transform itself (the least-squares fit is in
:mod:`~edgeface.vision.geometry`).
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import ModelError
from .cards import AlignmentSpec
from .faces import Face
from .geometry import similarity_transform


def alignment_matrix(face: Face, spec: AlignmentSpec) -> np.ndarray:
    if face.landmarks is not None and spec.landmark_template:
        idx = [i for i in spec.landmark_template if i < len(face.landmarks)]
        if len(idx) >= 2:
            src = face.landmarks[idx]
            dst = np.array([spec.landmark_template[i] for i in idx])
            return similarity_transform(src, dst)
    names = [n for n in spec.template if n in face.keypoint_names]
    if len(names) < 2:
        raise ModelError(
            f"the embedder's alignment template uses keypoints {sorted(spec.template)}, but the detector "
            f"gives {list(face.keypoint_names)}; use a detector and embedder whose cards agree"
        )
    src = np.array([face.keypoint(n) for n in names])
    dst = np.array([spec.template[n] for n in names])
    return similarity_transform(src, dst)


def warp(image: np.ndarray, matrix: np.ndarray, width: int, height: int) -> np.ndarray:
    """Sample the chip. Large faces are first halved (pyrDown) so the warp does not alias."""
    m = matrix.copy()
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    src = image
    while scale < 0.5 and min(src.shape[:2]) > 2:
        src = cv2.pyrDown(src)
        m[:, :2] *= 2.0
        # pyrDown's output pixel i is centred on input pixel 2i, so x_in = 2 * x_out exactly.
        scale *= 2.0
    return cv2.warpAffine(
        src, m, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )


def align(image: np.ndarray, face: Face, spec: AlignmentSpec) -> np.ndarray:
    """The aligned chip (height x width x 3 uint8 RGB) for ``face``."""
    return warp(image, alignment_matrix(face, spec), spec.width, spec.height)
