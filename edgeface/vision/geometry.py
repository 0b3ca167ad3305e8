"""Geometry shared by the models and the warp: box overlap and non-maximum suppression, turning images
and points by multiples of 90°, and the least-squares similarity transform.

Pure numpy, no model knowledge: a detector family (``models/``) decodes its own outputs and uses these
to merge and map them back; :mod:`~edgeface.vision.align` uses the similarity transform for the chip.
"""

from __future__ import annotations

import numpy as np


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one box (x0, y0, x1, y1) with each row of ``boxes`` (N, 4)."""
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    iou: np.ndarray = inter / np.maximum(area + areas - inter, 1e-9)
    return iou


def weighted_nms(
    boxes: np.ndarray, points: np.ndarray, scores: np.ndarray, iou_limit: float
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """MediaPipe's weighted non-maximum suppression.

    Candidates overlapping the best remaining one by more than ``iou_limit`` are merged into it: box and
    keypoints are their score-weighted mean, the score is the best one's. Returns (box, points, score).
    """
    order = np.argsort(-scores)
    boxes, points, scores = boxes[order], points[order], scores[order]
    alive = np.ones(len(scores), dtype=bool)
    out: list[tuple[np.ndarray, np.ndarray, float]] = []
    for i in range(len(scores)):
        if not alive[i]:
            continue
        idx = np.flatnonzero(alive)
        overlap = idx[iou(boxes[i], boxes[idx]) > iou_limit]
        overlap = np.union1d(overlap, [i])
        w = scores[overlap][:, None]
        box = (boxes[overlap] * w).sum(0) / w.sum()
        pts = (points[overlap] * w[:, :, None]).sum(0) / w.sum()
        out.append((box, pts, float(scores[i])))
        alive[overlap] = False
    return out


def rotate_image(image: np.ndarray, degrees: int) -> np.ndarray:
    """Turn an image clockwise by a multiple of 90 degrees."""
    k = (degrees // 90) % 4
    return np.ascontiguousarray(np.rot90(image, -k)) if k else image


def unrotate_points(pts: np.ndarray, degrees: int, width: int, height: int) -> np.ndarray:
    """Map points found in an image turned clockwise by ``degrees`` back to the original
    (``width`` x ``height``) image."""
    k = (degrees // 90) % 4
    x, y = pts[..., 0], pts[..., 1]
    if k == 0:
        return pts
    if k == 1:  # rotated is height wide: x' = height - y, y' = x
        out = np.stack([y, height - x], axis=-1)
    elif k == 2:
        out = np.stack([width - x, height - y], axis=-1)
    else:  # x' = y, y' = width - x
        out = np.stack([width - y, x], axis=-1)
    return out.astype(np.float32)


def unrotate_box(box: np.ndarray, degrees: int, width: int, height: int) -> tuple[float, float, float, float]:
    """The box (x0, y0, x1, y1) found in an image turned clockwise by ``degrees``, in the original image."""
    corners = unrotate_points(np.asarray(box).reshape(2, 2), degrees, width, height)
    x0, y0 = corners.min(0)
    x1, y1 = corners.max(0)
    return float(x0), float(y0), float(x1), float(y1)


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
