"""Deterministic chip augmentations (NumPy + OpenCV, seeded): mirror, small similarity jitter, colour.

Used to widen the int8 calibration set beyond frontal, well-lit chips and to make test fixtures.
Unlike ``dlib.jitter_image`` (whose generator is a process-wide static), the output depends only on
the chip and the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import numpy as np


def mirror(chip: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(chip[:, ::-1])


def jitter(chip: np.ndarray, rng: np.random.Generator, *, max_degrees: float = 6.0, max_scale: float = 0.06,
           max_shift: float = 0.04, colour: bool = True) -> np.ndarray:
    """A random small rotation/scale/shift (border replicated), then optionally gain, bias and gamma."""
    import cv2

    h, w = chip.shape[:2]
    angle = rng.uniform(-max_degrees, max_degrees)
    scale = 1.0 + rng.uniform(-max_scale, max_scale)
    dx, dy = rng.uniform(-max_shift, max_shift, size=2) * (w, h)
    m = cv2.getRotationMatrix2D((w / 2 - 0.5, h / 2 - 0.5), angle, scale)
    m[:, 2] += (dx, dy)
    out = cv2.warpAffine(chip, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if colour:
        gain = rng.uniform(0.75, 1.25, size=3)  # per channel: white balance and exposure
        bias = rng.uniform(-20, 20)
        gamma = rng.uniform(0.8, 1.25)
        x = out.astype(np.float64) / 255.0
        x = np.clip(x ** gamma * gain * 255.0 + bias, 0, 255)
        out = np.rint(x).astype(np.uint8)
    return out
