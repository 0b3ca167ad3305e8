#!/usr/bin/env python3
"""Stage 2 of the alignment-template derivation: where dlib's chip puts BlazeFace's keypoints.

Reads stage 1's output (dlib's image -> chip transform for 2,000 LFW images not in pairs.txt), runs
edgeface's detector on the same images, maps each BlazeFace keypoint into dlib's 150x150 chip with
dlib's own transform, and takes the per-keypoint median. Aligning BlazeFace keypoints onto that
template then reproduces dlib's chip as closely as a similarity transform can.

    .venv/bin/python models/alignment/fit_template.py var/cache/dlib_fit.npz \
        --keypoints right_eye,left_eye,nose_tip,mouth --write-cards dlib-resnet-v1-float32,dlib-resnet-v1-int8
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from edgeface.config import Config  # noqa: E402
from edgeface.evaluation.embeddings import centre_face  # noqa: E402
from edgeface.evaluation.lfw import lfw_dir  # noqa: E402
from edgeface.vision.cards import find_card  # noqa: E402
from edgeface.vision.engine import Engine  # noqa: E402
from edgeface.vision.models.facemesh import FaceMesh  # noqa: E402


def mapped_keypoints(npz: Path, root: Path, mesh: bool = False) -> tuple[tuple[str, ...], np.ndarray]:
    """Each face's keypoints (or, with ``mesh``, its 468 mesh landmarks) in dlib's chip coordinates."""
    z = np.load(npz)
    engine = Engine(Config())
    refiner = FaceMesh(find_card("mediapipe-face-mesh")) if mesh else None
    rows = []
    names: tuple[str, ...] = ()
    for name, m in zip(z["names"], z["transforms"]):
        image = engine.load_image(root / name)
        face = centre_face(engine.detect(image), image.shape)
        if face is None:
            continue
        if refiner is not None:
            pts, presence = refiner.landmarks(image, face)
            if presence < refiner.min_presence:
                continue
            names = tuple(str(i) for i in range(len(pts)))
        else:
            pts, names = face.keypoints, face.keypoint_names
        rows.append(np.c_[pts, np.ones(len(pts))] @ m.T)
    return names, np.array(rows)


def write_template(card: Path, table: str, template: dict[str, tuple[float, float]], note: str) -> None:
    """Replace (or append) the card's ``[table]`` with the fitted points."""
    text = card.read_text()
    body = "\n".join(f"{k} = [{x:.2f}, {y:.2f}]" for k, (x, y) in template.items())
    section = f"[{table}]\n# {note}\n{body}\n"
    pattern = r"\[" + re.escape(table) + r"\]\n(?:(?!\n\[)[\s\S])*?\n(?=\n\[|\Z)"
    new, n = re.subn(pattern, section, text)
    if n == 0:  # a new table goes before [thresholds] (or at the end)
        at = text.find("\n[thresholds]\n")
        new = text[: at + 1] + section + "\n" + text[at + 1 :] if at >= 0 else text.rstrip("\n") + "\n\n" + section
    card.write_text(new)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("npz", type=Path)
    ap.add_argument("--lfw", type=Path)
    ap.add_argument("--keypoints", default="right_eye,left_eye,nose_tip,mouth")
    ap.add_argument("--mesh", type=int, default=0, metavar="K",
                    help="fit a landmark template on the K most stable face-mesh points instead")
    ap.add_argument("--mesh-points", default="", metavar="I,J,...",
                    help="fit a landmark template on these face-mesh points (e.g. dlib's 5: 33,133,362,263,2)")
    ap.add_argument("--write-cards", default="", help="comma-separated card ids to update in models/")
    args = ap.parse_args()
    fixed = [int(i) for i in args.mesh_points.split(",") if i.strip()]
    names, pts = mapped_keypoints(args.npz, lfw_dir(args.lfw), mesh=bool(args.mesh or fixed))
    med = np.median(pts, axis=0)
    mad = np.median(np.abs(pts - med), axis=0)
    if args.mesh or fixed:
        spread = np.hypot(mad[:, 0], mad[:, 1])
        chosen = [str(i) for i in (fixed or sorted(np.argsort(spread)[: args.mesh]))]
        args.mesh = len(chosen)
        template = {k: (float(med[int(k)][0]), float(med[int(k)][1])) for k in chosen}
        print(f"{len(pts)} faces; the {args.mesh} most stable mesh points in dlib's chip:")
        for k in chosen:
            print(f"  {k:>4s} ({med[int(k)][0]:7.2f}, {med[int(k)][1]:7.2f})  spread {spread[int(k)]:.2f}")
        how = f"--mesh-points {args.mesh_points}" if fixed else f"--mesh {args.mesh}"
        note = (f"Median position in dlib's chip of face-mesh landmarks {','.join(chosen)}, over {len(pts)} LFW "
                f"faces not in pairs.txt (models/alignment/fit_template.py {how})")
        for card_id in [c for c in args.write_cards.split(",") if c]:
            write_template(HERE.parent / f"{card_id}.toml", "alignment.landmark_template", template, note)
            text = (HERE.parent / f"{card_id}.toml").read_text()
            if "landmark_model" not in text:
                raise SystemExit(f"models/{card_id}.toml: add landmark_model = \"mediapipe-face-mesh\" under [alignment]")
            print(f"updated models/{card_id}.toml")
        return 0
    print(f"{len(pts)} faces; keypoint positions in dlib's 150x150 chip (median, MAD):")
    for n, (x, y), (dx, dy) in zip(names, med, mad):
        print(f"  {n:20s} ({x:7.2f}, {y:7.2f})  MAD ({dx:.2f}, {dy:.2f})")
    chosen = [k.strip() for k in args.keypoints.split(",") if k.strip()]
    template = {k: (float(med[names.index(k)][0]), float(med[names.index(k)][1])) for k in chosen}
    note = (f"Median position of BlazeFace keypoints in dlib's chip over {len(pts)} LFW faces not in "
            "pairs.txt (models/alignment/fit_template.py)")
    for card_id in [c for c in args.write_cards.split(",") if c]:
        write_template(HERE.parent / f"{card_id}.toml", "alignment.template", template, note)
        print(f"updated models/{card_id}.toml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
