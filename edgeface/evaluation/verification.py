"""LFW View 2 verification: 10-fold accuracy (threshold from the training folds), TAR at FAR, pose.

Scores are cosine similarities of L2-normalised embeddings; a pair with an image where no face was
found scores -1 (the pipeline produced no embedding, so it cannot say "same").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .lfw import Pair


@dataclass(frozen=True)
class PairScores:
    scores: np.ndarray  # (P,) cosine similarity
    same: np.ndarray  # (P,) bool
    fold: np.ndarray  # (P,) int
    yaw: np.ndarray  # (P,) largest |yaw| of the two faces (nan if unknown)
    missing: int  # pairs where a face was not found


def pair_scores(pairs: list[Pair], index: dict, vectors: np.ndarray, found: np.ndarray, yaw: np.ndarray) -> PairScores:
    a = np.array([index[p.a] for p in pairs])
    b = np.array([index[p.b] for p in pairs])
    ok = found[a] & found[b]
    scores = np.where(ok, np.einsum("ij,ij->i", vectors[a], vectors[b]), -1.0)
    return PairScores(
        scores=scores.astype(np.float64),
        same=np.array([p.same for p in pairs]),
        fold=np.array([p.fold for p in pairs]),
        yaw=np.fmax(np.abs(yaw[a]), np.abs(yaw[b])),
        missing=int((~ok).sum()),
    )


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The threshold with the highest accuracy (midpoint between neighbouring scores)."""
    order = np.sort(np.unique(scores))
    candidates = np.concatenate([[order[0] - 1e-6], (order[:-1] + order[1:]) / 2, [order[-1] + 1e-6]])
    acc = [((scores >= t) == same).mean() for t in candidates]
    best = np.flatnonzero(np.isclose(acc, np.max(acc)))
    return float(candidates[best[len(best) // 2]])


def ten_fold(ps: PairScores) -> dict[str, Any]:
    accs, thresholds = [], []
    for k in range(int(ps.fold.max()) + 1):
        test = ps.fold == k
        t = best_threshold(ps.scores[~test], ps.same[~test])
        thresholds.append(t)
        accs.append(float(((ps.scores[test] >= t) == ps.same[test]).mean()))
    return {
        "accuracy_mean": float(np.mean(accs)),
        "accuracy_std": float(np.std(accs)),
        "fold_accuracies": accs,
        "threshold_mean": float(np.mean(thresholds)),
        "thresholds": thresholds,
    }


def tar_at_far(ps: PairScores, far: float) -> dict[str, float]:
    """TAR at the lowest threshold whose false-accept rate over all impostor pairs is <= far.

    With LFW's 3,000 impostor pairs, FAR 1e-3 means at most 3 false accepts: a coarse figure.
    """
    neg = np.sort(ps.scores[~ps.same])[::-1]
    allowed = int(math.floor(far * len(neg)))
    t = float(neg[allowed]) + 1e-9 if allowed < len(neg) else float(neg[-1])
    return {
        "far": far,
        "threshold": t,
        "tar": float((ps.scores[ps.same] >= t).mean()),
        "far_actual": float((neg >= t).mean()),
    }


def by_pose(ps: PairScores, threshold: float, edges: tuple[float, ...] = (0, 15, 30, 45, 90)) -> list[dict[str, Any]]:
    """Accuracy at ``threshold`` by the larger estimated |yaw| of the pair's two faces."""
    out = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (ps.yaw >= lo) & (ps.yaw < hi)
        n = int(sel.sum())
        acc = float(((ps.scores[sel] >= threshold) == ps.same[sel]).mean()) if n else float("nan")
        out.append({"yaw": f"{lo:g}-{hi:g}", "pairs": n, "accuracy": acc})
    return out
