#!/usr/bin/env python3
"""Stage 1 of the alignment-template derivation: dlib's own alignment of LFW faces (convert venv).

For each image: dlib's HOG face detector (as face_recognition 1.3.0 uses it), the 5-point shape
predictor, and ``get_face_chip`` (size 150, padding 0.25). Saves, per image, the 5 landmarks, the
similarity transform image -> chip that dlib used, and dlib's chip itself, to one .npz file outside
the repository (LFW crops are never committed).

    .venv-convert/bin/python models/alignment/dlib_reference.py --set fit  --out var/cache/dlib_fit.npz
    .venv-convert/bin/python models/alignment/dlib_reference.py --set pairs --out var/cache/dlib_pairs.npz

``--set fit``: 2,000 LFW images (seed 0) NOT used by pairs.txt, to fit the template on.
``--set pairs``: the 7,701 images of View 2, to compare our alignment with dlib's on the benchmark.
"""

from __future__ import annotations

import argparse
import random
import sys
import tarfile
import tempfile
from pathlib import Path

import dlib
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from edgeface.bench import lfw  # noqa: E402
from edgeface.vision.geometry import similarity_transform  # noqa: E402  (pure numpy; no runtime needed)

SDIST = "face_recognition_models-0.3.0.tar.gz"
PREDICTOR = "face_recognition_models-0.3.0/face_recognition_models/models/shape_predictor_5_face_landmarks.dat"



def chip_transform(details: "dlib.chip_details") -> np.ndarray:
    """The image -> chip similarity dlib's extract_image_chip uses: chip corners (0,0), (n-1,0),
    (n-1,n-1) sit on the detail rectangle's corners turned by its angle about its centre."""
    r, a = details.rect, details.angle
    centre = np.array([(r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2])
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    corners = [(r.left(), r.top()), (r.right(), r.top()), (r.right(), r.bottom())]
    image_pts = np.array([centre + rot @ (np.array(c) - centre) for c in corners])
    n = details.cols - 1
    return similarity_transform(image_pts, np.array([(0, 0), (n, 0), (n, details.rows - 1)], dtype=float))


def image_sets(root: Path) -> dict[str, list[Path]]:
    pair_images = sorted({p for pair in lfw.pairs(root) for p in (pair.a, pair.b)})
    in_pairs = set(pair_images)
    rest = [p for p in lfw.all_images(root) if p not in in_pairs]
    return {"pairs": pair_images, "fit": sorted(random.Random(0).sample(rest, 2000))}


def predictor_path(sdist: Path, tmp: Path) -> Path:
    with tarfile.open(sdist) as tf:
        tf.extract(PREDICTOR, tmp, filter="data")
    return tmp / PREDICTOR


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", choices=["fit", "pairs"], required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--lfw", type=Path, default=None)
    ap.add_argument("--sdist", type=Path, default=Path("/tmp/dl") / SDIST)
    args = ap.parse_args()
    root = lfw.lfw_dir(args.lfw)
    paths = image_sets(root)[args.set]
    detector = dlib.get_frontal_face_detector()
    with tempfile.TemporaryDirectory() as tmp:
        sp = dlib.shape_predictor(str(predictor_path(args.sdist, Path(tmp))))
    names, landmarks, transforms, chips, missed = [], [], [], [], []
    for i, p in enumerate(paths):
        img = dlib.load_rgb_image(str(p))
        dets = detector(img, 1)
        if not dets:
            missed.append(str(p.relative_to(root)))
            continue
        h, w = img.shape[:2]
        det = min(dets, key=lambda r: (r.center().x - w / 2) ** 2 + (r.center().y - h / 2) ** 2)
        shape = sp(img, det)
        pts = np.array([(shape.part(k).x, shape.part(k).y) for k in range(5)], dtype=np.float64)
        names.append(str(p.relative_to(root)))
        landmarks.append(pts)
        transforms.append(chip_transform(dlib.get_face_chip_details(shape, 150, 0.25)))
        chips.append(dlib.get_face_chip(img, shape, size=150, padding=0.25))
        if i % 500 == 0:
            print(f"{i}/{len(paths)}", file=sys.stderr, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, names=np.array(names), landmarks=np.array(landmarks), transforms=np.array(transforms),
             chips=np.array(chips, dtype=np.uint8), missed=np.array(missed))
    print(f"{len(names)} aligned, {len(missed)} without a HOG detection -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
