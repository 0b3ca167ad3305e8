#!/usr/bin/env python3
"""LFW View 2 10-fold accuracy from the output of the README's CLI, `edgeface embed --json`.

The benchmarks embed LFW in-process; this checks the figure through the command users run:

    edgeface embed --json ../shared/data/lfw/images > /tmp/lfw.jsonl
    python tools/lfw_from_embed_json.py /tmp/lfw.jsonl [--lfw ../shared/data/lfw]

Per image the face LFW labels is taken (the one covering the image centre, best detector score; else
the nearest), as `edgeface bench lfw` does; an image with no face scores -1 in its pairs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgeface.evaluation import lfw, verification  # noqa: E402


def centre(record: dict) -> list[float] | None:
    faces = record.get("faces") or []
    if not faces:
        return None
    w, h = record["width"], record["height"]

    def covers(f: dict) -> bool:
        x0, y0, x1, y1 = f["box"]
        return x0 <= w / 2 <= x1 and y0 <= h / 2 <= y1

    covering = [f for f in faces if covers(f)]
    if covering:
        return max(covering, key=lambda f: f["score"])["embedding"]
    return min(
        faces,
        key=lambda f: ((f["box"][0] + f["box"][2]) / 2 - w / 2) ** 2 + ((f["box"][1] + f["box"][3]) / 2 - h / 2) ** 2,
    )["embedding"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("jsonl", type=Path)
    ap.add_argument("--lfw", type=Path)
    args = ap.parse_args()
    root = lfw.lfw_dir(args.lfw)
    vecs: dict[Path, list[float] | None] = {}
    models = set()
    for line in args.jsonl.read_text().splitlines():
        r = json.loads(line)
        if "image" in r:
            vecs[Path(r["image"]).resolve()] = centre(r) if "error" not in r else None
            models.add(r.get("model"))
    pairs = lfw.pairs(root)
    paths = sorted({p.resolve() for pr in pairs for p in (pr.a, pr.b)})
    missing_records = [p for p in paths if p not in vecs]
    if missing_records:
        raise SystemExit(
            f"{len(missing_records)} pair images have no record in {args.jsonl}, e.g. {missing_records[0]}"
        )
    dim = len(next(v for v in vecs.values() if v is not None))
    found = np.array([vecs[p] is not None for p in paths])
    matrix = np.array([vecs[p] if vecs[p] is not None else [0.0] * dim for p in paths], dtype=np.float64)
    index = {p: i for i, p in enumerate(paths)}
    resolved = [lfw.Pair(pr.a.resolve(), pr.b.resolve(), pr.same, pr.fold) for pr in pairs]
    ps = verification.pair_scores(resolved, index, matrix, found, np.full(len(paths), np.nan))
    res = verification.ten_fold(ps)
    print(
        json.dumps(
            {
                "model": sorted(m for m in models if m),
                "images": len(paths),
                "no_face": int((~found).sum()),
                "accuracy_mean": round(res["accuracy_mean"], 5),
                "accuracy_std": round(res["accuracy_std"], 5),
                "threshold_mean": round(res["threshold_mean"], 4),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
