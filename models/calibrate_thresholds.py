#!/usr/bin/env python3
"""Calibrate an embedder card's thresholds on LFW, through the full edgeface pipeline.

Writes two things into the card:
- ``[thresholds] cosine``: the 1:1 threshold, the mean of the 10 training-fold best-accuracy
  thresholds of LFW View 2 (as ``edgeface bench lfw`` reports it);
- ``[thresholds.impostor_tail]``: FAR(t), the share of impostor comparisons (every pair of LFW images
  of different people, ~87 million) scoring at least t, from FAR 1e-2 down to where at least 20
  impostor pairs remain. Galleries turn it into a 1:N threshold for their size
  (edgeface/vision/calibration.py).

    .venv/bin/python models/calibrate_thresholds.py --embedders dlib-resnet-v1-float32,dlib-resnet-v1-int8
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from edgeface.config import Config  # noqa: E402
from edgeface.evaluation import accuracy, lfw  # noqa: E402
from edgeface.evaluation.embeddings import lfw_embeddings  # noqa: E402

BINS = np.linspace(-1.0, 1.0, 40001)  # 5e-5 wide


def impostor_tail(vectors: np.ndarray, found: np.ndarray, people: np.ndarray, min_count: int = 20
                  ) -> tuple[np.ndarray, np.ndarray, int]:
    v = vectors[found]
    who = people[found]
    counts = np.zeros(len(BINS) - 1, np.int64)
    total = 0
    for s in range(0, len(v), 1024):
        sims = v[s : s + 1024] @ v.T
        rows = np.arange(s, min(s + 1024, len(v)))
        upper = np.arange(len(v))[None, :] > rows[:, None]  # each unordered pair once
        different = who[s : s + 1024, None] != who[None, :]
        sel = sims[upper & different]
        counts += np.histogram(sel, BINS)[0]
        total += sel.size
    at_least = np.cumsum(counts[::-1])[::-1]  # impostor pairs scoring >= left edge of each bin
    far = at_least / total
    edges = BINS[:-1]
    grid = [t for t in np.arange(0.0, 1.0, 0.0025)]  # cosine scales differ by model: start low
    sims, fars = [], []
    for t in grid:
        i = int(np.searchsorted(edges, t))
        if at_least[i] < min_count:
            break
        if far[i] <= 1e-2:
            sims.append(round(float(t), 4))
            fars.append(float(f"{far[i]:.4g}"))
    return np.array(sims), np.array(fars), total


def write_card(card: Path, cosine: float, sims: np.ndarray, fars: np.ndarray, total: int, note: str) -> None:
    text = card.read_text()
    text, n = re.subn(r"(?m)^cosine = [0-9.]+", f"cosine = {cosine:.4f}", text, count=1)
    if n != 1:
        raise SystemExit(f"{card}: no 'cosine = ...' line under [thresholds]")
    table = (
        "[thresholds.impostor_tail]\n"
        f"# FAR(t): share of {total:,} LFW impostor pairs (all pairs of images of different people) with\n"
        f"# cosine similarity >= t, {note}. Used to derive 1:N thresholds (edgeface/vision/calibration.py).\n"
        f"similarity = [{', '.join(f'{s:.4f}' for s in sims)}]\n"
        f"far = [{', '.join(f'{f:.4g}' for f in fars)}]\n"
    )
    text = re.sub(r"\n\[thresholds\.impostor_tail\]\n(?:(?!\n\[)[\s\S])*", "\n", text).rstrip("\n") + "\n"
    card.write_text(text + "\n" + table)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--embedders", default="mobilefacenet-v1-float32,mobilefacenet-v1-int8")
    ap.add_argument("--lfw", type=Path)
    args = ap.parse_args()
    root = lfw.lfw_dir(args.lfw)
    paths = lfw.all_images(root)
    people = np.array([p.parent.name for p in paths])
    for emb in [e for e in args.embedders.split(",") if e]:
        cfg = accuracy.with_embedder(Config(), emb)
        verify = accuracy.verify_one(cfg, root, lambda x: x)
        e = lfw_embeddings(cfg, paths)
        sims, fars, total = impostor_tail(e.vectors, e.found, people)
        print(f"{emb}: 1:1 threshold {verify['threshold_mean']:.4f} (accuracy {100 * verify['accuracy_mean']:.2f}%); "
              f"impostor tail from {total:,} pairs: FAR {fars[0]:.2g} at {sims[0]} .. {fars[-1]:.2g} at {sims[-1]}")
        note = f"full pipeline{' with flip fusion' if verify['flip'] else ''}, models/calibrate_thresholds.py"
        write_card(HERE / f"{emb}.toml", verify["threshold_mean"], sims, fars, total, note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
