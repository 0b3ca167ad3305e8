"""Open-set 1:N identification on LFW: rank-1, FNIR at fixed FPIR, and FPIR/FNIR at derived thresholds,
for raw cosine and for the normalised score a bundle carries (edgeface/gallery/cohort.py).

Protocol (documented in the README): people are split by a seeded shuffle into enrolled (half) and
not enrolled. Gallery = the first ``images`` images of every enrolled person (1: the single-image
protocol; 3: multi-image, never all of a person's images, so everyone with two or more keeps a probe).
Mated probes = every other image of the enrolled people; non-mated probes = every image of the people
not enrolled. Search is exact (the index benchmark measures Annoy separately); candidates are ranked and
scored by :func:`edgeface.gallery.scoring.rank`, the unit's own code.

Tuning uses only :func:`split_people`'s validation half (seeded); figures are reported on the held-out
half, and on all people for comparison with earlier single-image figures.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..gallery.cohort import IdentityRows, Normaliser
from ..gallery.scoring import Space, pool_size, rank

SPLIT_SEED = 13  # validation / held-out split of LFW people (the benchmark's tuning split)


@dataclass(frozen=True)
class Protocol:
    gallery: list[Path]
    gallery_labels: list[int]  # position in ``enrolled`` of each gallery image
    enrolled: list[str]
    mated: list[Path]
    mated_labels: list[int]
    non_mated: list[Path]


def split_people(people: dict[str, list[Path]], seed: int = SPLIT_SEED) -> tuple[list[str], list[str]]:
    """(validation, held-out) halves of the people, by a seeded shuffle."""
    names = sorted(people)
    random.Random(seed).shuffle(names)
    cut = len(names) // 2
    return sorted(names[:cut]), sorted(names[cut:])


def protocol(
    people: dict[str, list[Path]],
    enrolled_fraction: float = 0.5,
    seed: int = 0,
    images: int = 1,
    only: list[str] | None = None,
) -> Protocol:
    names = sorted(only if only is not None else people)
    random.Random(seed).shuffle(names)
    cut = int(len(names) * enrolled_fraction)
    enrolled, others = sorted(names[:cut]), sorted(names[cut:])
    gallery: list[Path] = []
    g_lab: list[int] = []
    mated: list[Path] = []
    m_lab: list[int] = []
    for i, n in enumerate(enrolled):
        ps = people[n]
        k = min(images, max(1, len(ps) - 1))
        gallery += ps[:k]
        g_lab += [i] * k
        mated += ps[k:]
        m_lab += [i] * (len(ps) - k)
    non_mated = [p for n in others for p in people[n]]
    return Protocol(gallery, g_lab, enrolled, mated, m_lab, non_mated)


def best_candidates(
    gallery: np.ndarray,
    labels: np.ndarray,
    probes: np.ndarray,
    space: Space,
    norm: Normaliser | None,
    by_identity: IdentityRows | None,
    chunk: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """Each probe's best identity and its score in ``space``, as :meth:`Gallery.identify` ranks them."""
    ident = np.full(len(probes), -1, np.int64)
    score = np.full(len(probes), -np.inf)
    pool = min(len(gallery), pool_size(1))
    for s in range(0, len(probes), chunk):
        sims = probes[s : s + chunk] @ gallery.T
        top = np.argpartition(-sims, pool - 1, axis=1)[:, :pool]
        top_s = np.take_along_axis(sims, top, 1)
        order = np.argsort(-top_s, axis=1, kind="stable")
        top, top_s = np.take_along_axis(top, order, 1), np.take_along_axis(top_s, order, 1)
        for j in range(len(top)):
            c = rank(
                probes[s + j],
                top[j],
                top_s[j],
                labels,
                1,
                norm=norm,
                vectors=gallery,
                by_identity=by_identity,
                space=space,
            )[0]
            ident[s + j] = c.identity
            score[s + j] = c.score if space == "cosine" else c.normalised
    return ident, score


def evaluate(
    proto: Protocol,
    gallery: np.ndarray,
    mated: np.ndarray,
    mated_found: np.ndarray,
    non_mated: np.ndarray,
    non_mated_found: np.ndarray,
    space: Space,
    thresholds: dict[str, float],
    norm: Normaliser | None = None,
) -> dict[str, Any]:
    """Rank-1, FNIR at FPIR 1% and 0.1% (thresholds measured on the non-mated probes), and FPIR/FNIR at
    each of ``thresholds`` (name -> threshold in ``space``, e.g. derived for the gallery's size)."""
    labels = np.asarray(proto.gallery_labels, np.int64)
    by_id = IdentityRows(labels, len(proto.enrolled)) if norm is not None else None
    m_id, m_score = best_candidates(gallery, labels, mated, space, norm, by_id)
    _, n_score = best_candidates(gallery, labels, non_mated, space, norm, by_id)
    # A probe with no face found returns no candidate: a miss for mated, a correct rejection otherwise.
    m_score = np.where(mated_found, m_score, -np.inf)
    n_score = np.where(non_mated_found, n_score, -np.inf)
    correct = (m_id == np.asarray(proto.mated_labels)) & mated_found

    def at(t: float) -> dict[str, float]:
        return {
            "threshold": float(t),
            "fpir": float((n_score >= t).mean()),
            "fnir": float(1 - (correct & (m_score >= t)).mean()),
        }

    out: dict[str, Any] = {"space": space, "rank1": float(correct.mean())}
    finite = np.sort(n_score[np.isfinite(n_score)])[::-1]
    for fpir in (0.01, 0.001):
        k = int(np.floor(fpir * len(n_score)))
        t = float(finite[k]) + 1e-9 if k < len(finite) else -np.inf
        out[f"fpir_{fpir:g}"] = at(t)
    out["at"] = {name: at(t) for name, t in thresholds.items()}
    return out
