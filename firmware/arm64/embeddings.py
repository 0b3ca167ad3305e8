"""Embeddings of the fidelity fixture chips on this machine, and the agreement of two such files.

    python firmware/arm64/embeddings.py OUT.json               # run each embedder on the fixture chips
    python firmware/arm64/embeddings.py --compare X.json Y.json # min/mean cosine per model; exit 1 below
        [--pipeline X.jsonl Y.jsonl]                            # and of two `edgeface embed --json` runs

proof.sh runs the first on x86 and in the emulated arm64 root, then compares: the same model file must
give the same vectors on a unit's CPU as on the machine that calibrated it, within the fidelity tolerance
(tests/vision/test_fidelity_mobilefacenet.py: int8 within 0.97 of its source on every chip).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "vision" / "fixtures" / "mobilefacenet"
MODELS = ("mobilefacenet-v1-int8", "mobilefacenet-v1-float32")
# The tolerance the fidelity tests hold the int8 model to against its source framework: a unit's CPU
# must not move an embedding further than quantisation already does.
MIN_COSINE = 0.97


def embed_fixtures() -> dict[str, object]:
    """Unit-length embeddings of every fixture chip by each model in MODELS, keyed by model and chip."""
    from edgeface.vision.cards import find_card
    from edgeface.vision.models.embedder import Embedder

    names = sorted(json.loads((FIXTURES / "reference.json").read_text())["embeddings"])
    chips = np.stack([np.asarray(Image.open(FIXTURES / n).convert("RGB")) for n in names])
    out: dict[str, object] = {"machine": platform.machine(), "python": platform.python_version()}
    for model_id in MODELS:
        raw = Embedder(find_card(model_id, models_dir=REPO / "models", task="embedder")).raw(chips)
        vecs = raw.astype(np.float64) / np.linalg.norm(raw, axis=1, keepdims=True)
        out[model_id] = {n: [round(float(x), 7) for x in v] for n, v in zip(names, vecs, strict=True)}
    return out


def compare(a: dict[str, dict[str, list[float]]], b: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
    """Per model: min and mean cosine between the two files' vectors of the same chip."""
    figures = {}
    for model_id in MODELS:
        names = sorted(a[model_id])
        if names != sorted(b[model_id]):
            raise SystemExit(f"{model_id}: the two files embed different chips; rerun both from one checkout")
        x = np.asarray([a[model_id][n] for n in names])
        y = np.asarray([b[model_id][n] for n in names])
        cos = np.sum(x * y, axis=1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))
        figures[model_id] = {"chips": len(names), "min_cosine": float(cos.min()), "mean_cosine": float(cos.mean())}
    return figures


def compare_pipeline(a_path: Path, b_path: Path) -> dict[str, float]:
    """Two `edgeface embed --json` outputs of the same photos: faces found, box shift, embedding cosine."""
    a, b = ({r["image"]: r for r in map(json.loads, p.read_text().splitlines())} for p in (a_path, b_path))
    if sorted(a) != sorted(b):
        raise SystemExit("the two embed runs cover different photos")
    cos, shift, faces = [], [], 0
    for image in sorted(a):
        fa, fb = a[image]["faces"], b[image]["faces"]
        if len(fa) != len(fb):
            raise SystemExit(f"{image}: {len(fa)} faces on one machine, {len(fb)} on the other")
        for x, y in zip(fa, fb, strict=True):
            faces += 1
            shift.append(float(np.max(np.abs(np.subtract(x["box"], y["box"])))))
            if x.get("embedding") and y.get("embedding"):
                u, v = np.asarray(x["embedding"]), np.asarray(y["embedding"])
                cos.append(float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v))))
    return {
        "photos": len(a),
        "faces": faces,
        "embedded": len(cos),
        "max_box_shift_px": max(shift, default=0.0),
        "min_cosine": min(cos, default=1.0),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--compare", action="store_true", help="compare two files written by this script")
    parser.add_argument("--pipeline", nargs=2, type=Path, help="also compare two `edgeface embed --json` outputs")
    args = parser.parse_args()
    if not args.compare:
        args.files[0].write_text(json.dumps(embed_fixtures()))
        return 0
    if len(args.files) != 2:
        parser.error("--compare takes two files")
    a, b = (json.loads(f.read_text()) for f in args.files)
    figures = compare(a, b)
    result: dict[str, object] = {"a": a["machine"], "b": b["machine"], "tolerance": MIN_COSINE, "models": figures}
    worst = [f["min_cosine"] for f in figures.values()]
    if args.pipeline:
        pipeline = compare_pipeline(*args.pipeline)
        result["pipeline"] = pipeline
        worst.append(pipeline["min_cosine"])
    print(json.dumps(result))
    return 0 if min(worst) >= MIN_COSINE else 1


if __name__ == "__main__":
    sys.exit(main())
