"""Alignment: a similarity transform that puts a face's keypoints on the embedder's chip template.

The template (chip size and where each keypoint belongs) comes from the embedder's model card. Any
in-plane rotation of the face is undone by the transform itself.
"""

from __future__ import annotations

import cv2
import numpy as np

from .detection import Face
from .errors import ModelError
from .modelcard import AlignmentSpec


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) taking the
    (N, 2) points ``src`` to ``dst`` (Umeyama 1991). Returns the 2x3 matrix."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rot = u @ sign @ vt
    var = (s**2).sum() / len(src)
    scale = (sig * np.diag(sign)).sum() / var if var > 0 else 1.0
    m = np.empty((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


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
    return cv2.warpAffine(src, m, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0)


def align(image: np.ndarray, face: Face, spec: AlignmentSpec) -> np.ndarray:
    """The aligned chip (height x width x 3 uint8 RGB) for ``face``."""
    return warp(image, alignment_matrix(face, spec), spec.width, spec.height)
