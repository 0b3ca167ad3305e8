"""Open-set 1:N identification on LFW: rank-1, FNIR at fixed FPIR, and the calibrated threshold.

Protocol (documented in the README): people are split by a seeded shuffle into enrolled (half) and
not enrolled. Gallery = the first image of every enrolled person. Mated probes = every other image
of the enrolled people; non-mated probes = every image of the people not enrolled. Search is exact
(the index benchmark measures Annoy separately).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Protocol:
    gallery: list[Path]
    gallery_ids: list[str]
    mated: list[Path]
    mated_ids: list[str]
    non_mated: list[Path]


def protocol(people: dict[str, list[Path]], enrolled_fraction: float = 0.5, seed: int = 0) -> Protocol:
    names = sorted(people)
    random.Random(seed).shuffle(names)
    cut = int(len(names) * enrolled_fraction)
    enrolled, others = sorted(names[:cut]), sorted(names[cut:])
    gallery = [people[n][0] for n in enrolled]
    mated = [(p, n) for n in enrolled for p in people[n][1:]]
    non_mated = [p for n in others for p in people[n]]
    return Protocol(gallery, enrolled, [p for p, _ in mated], [n for _, n in mated], non_mated)


def search(gallery: np.ndarray, probes: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Top-1 gallery index and score for each probe (exact cosine search)."""
    best = np.empty(len(probes), np.int64)
    score = np.empty(len(probes), np.float32)
    for s in range(0, len(probes), chunk):
        sims = probes[s : s + chunk] @ gallery.T
        best[s : s + chunk] = sims.argmax(1)
        score[s : s + chunk] = sims.max(1)
    return best, score


def evaluate(
    proto: Protocol,
    gallery_vecs: np.ndarray,
    mated_vecs: np.ndarray,
    mated_found: np.ndarray,
    non_mated_vecs: np.ndarray,
    non_mated_found: np.ndarray,
    threshold: float,
    gallery_thresholds: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Rank-1, FNIR at fixed FPIR, and FPIR/FNIR at the card's 1:1 ``threshold`` and at each of
    ``gallery_thresholds`` (name -> threshold, e.g. calibrated for this gallery's size)."""
    g_ids = np.array(proto.gallery_ids)
    m_best, m_score = search(gallery_vecs, mated_vecs)
    n_best, n_score = search(gallery_vecs, non_mated_vecs)
    # A probe with no face found returns no candidate: a miss for mated, a correct rejection otherwise.
    m_score = np.where(mated_found, m_score, -np.inf)
    n_score = np.where(non_mated_found, n_score, -np.inf)
    correct = (g_ids[m_best] == np.array(proto.mated_ids)) & mated_found

    def at(t: float) -> dict[str, float]:
        return {
            "threshold": float(t),
            "fpir": float((n_score >= t).mean()),
            "fnir": float(1 - (correct & (m_score >= t)).mean()),
        }

    out: dict[str, Any] = {
        "gallery": len(proto.gallery),
        "mated_probes": len(proto.mated),
        "non_mated_probes": len(proto.non_mated),
        "rank1": float(correct.mean()),
        "one_to_one_threshold": at(threshold),
        "gallery_thresholds": {name: at(t) for name, t in (gallery_thresholds or {}).items()},
    }
    finite = np.sort(n_score[np.isfinite(n_score)])[::-1]
    for fpir in (0.01, 0.001):
        k = int(np.floor(fpir * len(n_score)))
        t = float(finite[k]) + 1e-9 if k < len(finite) else -1.0
        out[f"fpir_{fpir:g}"] = at(t)
    return out
