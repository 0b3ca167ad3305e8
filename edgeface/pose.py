"""Head pose (yaw, pitch, roll) estimated from the detector's keypoints.

Rough by design (a few degrees; see the calibration note below): good enough to gate profiles out and to report accuracy by pose,
which is what field photos need; no 3-D model fitting. Angles in degrees:
roll  = turn of the eye line in the image plane (clockwise positive);
yaw   = head turned to the subject's left (positive) or right (negative);
pitch = head raised (positive) or lowered (negative).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .detection import Face

# Yaw: with the roll undone, r = (d_right - d_left) / (d_right + d_left) compares the nose tip's
# distances to the two ear keypoints; a head turned by yaw gives r = k * tan(yaw). Pitch: t = nose
# height as a fraction of eye-to-mouth height moves by depth * sin(pitch) around its frontal value.
# The three constants were fitted (least squares) against the 3-D landmarks of MediaPipe Face Mesh
# on 600 random LFW faces: residual RMSE 2.6° for yaw and 3.9° for pitch.
_YAW_K = 1.98
_NOSE_HEIGHT_FRONTAL = 0.515
_NOSE_DEPTH = 0.64


@dataclass(frozen=True)
class Pose:
    yaw: float
    pitch: float
    roll: float


def estimate_pose(face: Face) -> Pose:
    names = face.keypoint_names
    need = ("right_eye", "left_eye", "nose_tip", "mouth")
    if not all(n in names for n in need):
        return Pose(math.nan, math.nan, math.nan)
    re, le, nose, mouth = (np.asarray(face.keypoint(n), dtype=np.float64) for n in need)
    dx, dy = le - re
    roll = math.degrees(math.atan2(dy, dx))
    # Undo the roll around the eye midpoint so "up" is up.
    c, s = math.cos(-math.radians(roll)), math.sin(-math.radians(roll))
    rot = np.array([[c, -s], [s, c]])
    mid = (re + le) / 2

    def upright(p: np.ndarray) -> np.ndarray:
        return rot @ (p - mid)

    n, m = upright(nose), upright(mouth)
    if "right_ear_tragion" in names and "left_ear_tragion" in names:
        rt = upright(np.asarray(face.keypoint("right_ear_tragion")))
        lt = upright(np.asarray(face.keypoint("left_ear_tragion")))
        d_right, d_left = n[0] - rt[0], lt[0] - n[0]
        total = d_right + d_left
        r = (d_right - d_left) / total if total > 1e-6 else 0.0
        yaw = math.degrees(math.atan(r / _YAW_K))
    else:
        eye_dist = max(float(np.hypot(dx, dy)), 1e-6)
        yaw = math.degrees(math.asin(float(np.clip(n[0] / eye_dist, -1, 1))))
    height = m[1]
    if height > 1e-6:
        t = n[1] / height
        pitch = math.degrees(math.asin(float(np.clip((_NOSE_HEIGHT_FRONTAL - t) / _NOSE_DEPTH, -1, 1))))
    else:
        pitch = math.nan
    return Pose(yaw=yaw, pitch=pitch, roll=roll)
