"""dlib's reference alignment and the fixed LFW selections used for calibration and fidelity checks.

Alignment is what face_recognition 1.3.0 does: dlib's HOG face detector (upsampled once), the
5-point shape predictor, then ``dlib.get_face_chip(img, shape, size=150, padding=0.25)``. On LFW,
when the detector finds nothing, the image centre is used as the face box (LFW faces are centred),
so every selected image yields a chip and the selections do not depend on detector misses.

Selections are a pure function of the file list and a seed: images are ordered by
``sha256(f"{seed}:{Person/Person_NNNN.jpg}")`` (stable across Python, NumPy and platforms). The
calibration set is the first ``n`` images in that order; the held-out set is the next images whose
person has no image in the calibration set, so held-out chips share neither images nor people with
calibration.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CHIP_SIZE = 150
CHIP_PADDING = 0.25
CALIBRATION_SEED = 3
CALIBRATION_COUNT = 500


def load_rgb(path: Path) -> np.ndarray:
    """An image file as uint8 RGB (alpha dropped), decoded by Pillow."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def ordered(paths: list[Path], root: Path, seed: int) -> list[Path]:
    """``paths`` in a seeded, platform-independent pseudo-random order."""

    def key(p: Path) -> str:
        return hashlib.sha256(f"{seed}:{p.relative_to(root).as_posix()}".encode()).hexdigest()

    return sorted(paths, key=key)


@dataclass(frozen=True)
class Selection:
    calibration: list[Path]
    held_out: list[Path]


def lfw_selection(lfw_root: Path, n_calibration: int = CALIBRATION_COUNT, n_held_out: int = 300,
                  seed: int = CALIBRATION_SEED) -> Selection:
    """Calibration images, then held-out images of other people, from ``lfw_root/images``."""
    images_dir = lfw_root / "images"
    paths = sorted(images_dir.glob("*/*.jpg"))
    if not paths:
        raise FileNotFoundError(f"no LFW images under {images_dir}; pass --lfw DIR (the folder with images/)")
    order = ordered(paths, images_dir, seed)
    calibration = order[:n_calibration]
    people = {p.parent.name for p in calibration}
    held_out = [p for p in order[n_calibration:] if p.parent.name not in people][:n_held_out]
    return Selection(calibration=calibration, held_out=held_out)


class DlibAligner:
    """dlib HOG detector + 5-point shape predictor + ``get_face_chip`` (150x150, padding 0.25)."""

    def __init__(self, shape_predictor: Path, upsample: int = 1) -> None:
        import dlib  # the convert extra; only alignment needs it

        self.dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(shape_predictor))
        self.upsample = upsample

    def face_box(self, img: np.ndarray, centre_fallback: bool) -> object | None:
        """The detection nearest the image centre, or a centred box if allowed and none was found."""
        dlib = self.dlib
        h, w = img.shape[:2]
        dets = list(self.detector(img, self.upsample))
        if dets:
            cx, cy = w / 2, h / 2
            return min(dets, key=lambda d: (d.center().x - cx) ** 2 + (d.center().y - cy) ** 2)
        if not centre_fallback:
            return None
        side = min(h, w) * 0.45
        return dlib.rectangle(int(w / 2 - side / 2), int(h / 2 - side / 2), int(w / 2 + side / 2),
                              int(h / 2 + side / 2))

    def shape(self, img: np.ndarray, centre_fallback: bool = False):
        box = self.face_box(img, centre_fallback)
        return None if box is None else self.predictor(img, box)

    def chip(self, img: np.ndarray, centre_fallback: bool = False) -> np.ndarray | None:
        shape = self.shape(img, centre_fallback)
        if shape is None:
            return None
        return np.asarray(self.dlib.get_face_chip(img, shape, size=CHIP_SIZE, padding=CHIP_PADDING), dtype=np.uint8)

    def chips(self, paths: list[Path]) -> np.ndarray:
        """Chips (N, 150, 150, 3) uint8 for LFW-style images, centre fallback on."""
        out = np.empty((len(paths), CHIP_SIZE, CHIP_SIZE, 3), dtype=np.uint8)
        for i, p in enumerate(paths):
            out[i] = self.chip(load_rgb(p), centre_fallback=True)
        return out
