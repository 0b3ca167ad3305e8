"""Open-set score normalisation (adaptive S-norm) over identity templates: one implementation for the
unit (:meth:`Gallery.identify`), anything central that searches a bundle, and the benchmarks.

Why: a raw cosine means different things for different faces. Some enrolled faces sit in a crowded part
of the embedding space and score high against everyone; some probes (blurred, turned, dark) do too. One
threshold on raw cosine must sit high enough for the worst of them, and people who are in the gallery
fall below it. S-norm rescales each comparison by how both sides score against a cohort of impostors::

    normalised(p, i) = ((s - mu_i) / sd_i + (s - mu_p) / sd_p) / 2

``s`` is the cosine of probe ``p`` and identity ``i``'s template; ``mu_i, sd_i`` the mean and spread of
the template's ``top_k`` highest scores against the cohort (computed when the gallery is published:
``norm_stats.npy``); ``mu_p, sd_p`` the same for the probe, computed per search against the cohort.
Both leave out cohort members of identity ``i`` itself, so a person's own images never count as their
impostors. A normalised score is "how many spreads above the crowd" this pair is, from both sides.

Templates: an identity with several enrolled images is compared through its template, the
L2-normalised mean of its images' embeddings. It is derived on both sides from the signed vectors and
labels (nothing more to ship); candidates still report the cosine of their best-matching image.

Cohort: the gallery itself, leave-one-identity-out: the templates of up to ``MAX_COHORT`` of its
identities, picked by the SHA-256 of their ids (so the pick is stable from version to version and a
delta stays small). A deployment needs no second set of faces, and on LFW this measured as well as a
cohort of people outside the gallery (docs/gallery.md). A gallery of fewer than ``MIN_COHORT``
identities is published without normalisation (raw decisions, as before); callers may add embeddings of
people not in the gallery (``extra``) to reach it.

Choices (K, templates vs best image, the cohort) were measured on a validation split of LFW people
(``edgeface bench identify``; figures in docs/gallery.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

METHOD = "s-norm"
TOP_K = 200  # cohort scores per side (validation: K 100 -> 200 lowered FNIR@FPIR 1% a little, 400 did not)
MAX_COHORT = 2000  # identities; a probe costs MAX_COHORT x dim multiply-adds more (0.26M for 128-d)
MIN_COHORT = 40  # fewer cohort members than this: no normalisation (too few impostor pairs to measure a tail)
SD_FLOOR = 1e-3  # a cohort of near-identical scores must not blow a score up
STATS, COHORT, COHORT_LABELS = "norm_stats.npy", "cohort.npy", "cohort_labels.npy"
FILES = (STATS, COHORT, COHORT_LABELS)
PAIRS_FOR_TAIL = 10_000_000  # impostor comparisons measured at publish time (FAR down to ~1e-6)


@dataclass(frozen=True)
class Normaliser:
    """What a bundle carries for S-norm: per-identity (gallery side) statistics and the cohort."""

    stats: np.ndarray  # (identities, 2) float32: mean and spread of each template's top-K cohort scores
    cohort: np.ndarray  # (C, dim) float32, L2-normalised
    cohort_labels: np.ndarray  # (C,) int32: the identity (position) a cohort member is, -1 if none
    top_k: int

    def __post_init__(self) -> None:
        c, k = len(self.cohort), self.top_k
        if self.stats.ndim != 2 or self.stats.shape[1] != 2 or self.cohort_labels.shape != (c,) or not 0 < k <= c:
            raise ValueError(
                f"inconsistent normalisation data: stats {self.stats.shape}, cohort {self.cohort.shape}, "
                f"labels {self.cohort_labels.shape}, top_k {k}"
            )

    def probe_stats(self, cohort_scores: np.ndarray, exclude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and spread of a probe's ``top_k`` cohort scores, leaving out each identity of ``exclude``.

        ``cohort_scores`` (C,) are the probe's cosines to the cohort; returns two (len(exclude),) arrays.
        """
        k = self.top_k
        exclude = np.asarray(exclude, np.int64)
        take = min(len(cohort_scores), k + 1)  # one member per identity: leaving one out needs k + 1
        top = np.argpartition(-cohort_scores, take - 1)[:take]
        top = top[np.argsort(-cohort_scores[top], kind="stable")]
        s = np.asarray(cohort_scores[top], np.float64)[None, :]
        lab = self.cohort_labels[top]
        first = np.arange(take)[None, :] < k
        m0, sd0 = _masked_stats(s, first)
        mean, sd = np.full(len(exclude), m0[0]), np.full(len(exclude), sd0[0])
        hit = np.isin(exclude, lab[:k])  # only these identities change the probe's top k
        if hit.any():
            keep = lab[None, :] != exclude[hit][:, None]
            keep &= np.cumsum(keep, axis=1) <= k
            mean[hit], sd[hit] = _masked_stats(s, keep)
        return mean, sd

    def normalise(self, template_scores: np.ndarray, identities: np.ndarray, cohort_scores: np.ndarray) -> np.ndarray:
        """S-norm of one probe's cosines to the templates of ``identities`` (positions), given its
        cosines to the cohort."""
        identities = np.asarray(identities, np.int64)
        t_mean, t_sd = self.probe_stats(cohort_scores, identities)
        z = self.stats[identities].astype(np.float64)
        s = np.asarray(template_scores, np.float64)
        out: np.ndarray = 0.5 * ((s - z[:, 0]) / z[:, 1] + (s - t_mean) / t_sd)
        return out


def _masked_stats(s: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = np.maximum(keep.sum(axis=1), 1)
    mean = (s * keep).sum(axis=1) / n
    var = ((s - mean[:, None]) ** 2 * keep).sum(axis=1) / n
    return mean, np.maximum(np.sqrt(var), SD_FLOOR)


# -- templates -----------------------------------------------------------------------------------------


class IdentityRows:
    """Which rows belong to each identity (labels sorted once), to build templates on demand."""

    def __init__(self, labels: np.ndarray, identities: int) -> None:
        lab = np.asarray(labels, np.int64)
        self.order = np.argsort(lab, kind="stable")
        self.starts = np.searchsorted(lab[self.order], np.arange(identities + 1))

    def rows(self, identity: int) -> np.ndarray:
        rows: np.ndarray = self.order[self.starts[identity] : self.starts[identity + 1]]
        return rows

    def counts(self) -> np.ndarray:
        return np.diff(self.starts)


def templates(vectors: np.ndarray, labels: np.ndarray, identities: int) -> np.ndarray:
    """(identities, dim) float32: each identity's L2-normalised mean embedding (zero if it has no rows)."""
    out = np.zeros((identities, vectors.shape[1]), np.float64)
    lab = np.asarray(labels, np.int64)
    for s in range(0, len(vectors), 65536):
        np.add.at(out, lab[s : s + 65536], np.asarray(vectors[s : s + 65536], np.float64))
    return _unit(out)


def templates_of(vectors: np.ndarray, by_identity: IdentityRows, identities: Sequence[int]) -> np.ndarray:
    """Templates of a few identities (a search's candidates), from the memory-mapped vectors."""
    out = np.zeros((len(identities), vectors.shape[1]), np.float64)
    for j, i in enumerate(identities):
        rows = np.sort(by_identity.rows(int(i)))
        out[j] = np.asarray(vectors[rows], np.float64).sum(axis=0)
    return _unit(out)


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(n > 0, n, 1.0)).astype(np.float32)


# -- publishing: the cohort, gallery-side statistics, the impostor tail ---------------------------------


def assemble(
    stats: np.ndarray,
    cohort_labels: np.ndarray,
    extra: np.ndarray,
    vectors: np.ndarray,
    by_identity: IdentityRows,
    top_k: int,
) -> Normaliser:
    """The normaliser from a bundle's files: gallery members of the cohort travel as identity positions
    (their templates are rebuilt here from the signed vectors, so a delta does not resend them), the
    others (label -1) as vectors in ``extra``, in order."""
    labels = np.asarray(cohort_labels, np.int32)
    members = labels >= 0
    if int((~members).sum()) != len(extra) or (members.any() and int(labels.max()) >= len(stats)):
        raise ValueError(f"cohort labels ({len(labels)}, {int((~members).sum())} external) do not fit the data")
    cohort = np.empty((len(labels), vectors.shape[1]), np.float32)
    cohort[members] = templates_of(vectors, by_identity, labels[members].tolist())
    cohort[~members] = np.asarray(extra, np.float32).reshape(-1, vectors.shape[1])
    return Normaliser(np.asarray(stats, np.float32), cohort, labels, top_k)


def cohort_pick(identity_ids: Sequence[str], limit: int = MAX_COHORT) -> np.ndarray:
    """Positions of up to ``limit`` identities, by the SHA-256 of their ids (stable across versions)."""
    keyed = sorted(range(len(identity_ids)), key=lambda i: hashlib.sha256(str(identity_ids[i]).encode()).digest())
    return np.sort(np.asarray(keyed[:limit], np.int64))


def fit(
    vectors: np.ndarray,
    labels: np.ndarray,
    identity_ids: Sequence[str],
    *,
    top_k: int = TOP_K,
    max_cohort: int = MAX_COHORT,
    extra: np.ndarray | None = None,
) -> Normaliser | None:
    """The normalisation data for a gallery (rows ``vectors`` of identities ``labels``), or None when the
    cohort would have fewer than ``MIN_COHORT`` identities. ``extra``: embeddings of people not in the
    gallery (one per person), added to the cohort."""
    n_ids = len(identity_ids)
    tmpl = templates(vectors, labels, n_ids)
    pick = cohort_pick(identity_ids, max_cohort)
    cohort, cohort_labels = tmpl[pick], pick.astype(np.int32)
    if extra is not None and len(extra):
        cohort = np.concatenate([cohort, np.asarray(extra, np.float32)])
        cohort_labels = np.concatenate([cohort_labels, np.full(len(extra), -1, np.int32)])
    if len(cohort) < MIN_COHORT:
        return None
    k = min(top_k, max(10, (len(cohort) - 1) // 4))
    stats = np.empty((n_ids, 2), np.float32)
    for s in range(0, n_ids, 4096):
        sc = np.asarray(tmpl[s : s + 4096] @ cohort.T, np.float64)
        own = np.arange(s, s + len(sc))
        sc[own[:, None] == cohort_labels[None, :]] = -np.inf  # leave the identity itself out
        top = -np.partition(-sc, k - 1, axis=1)[:, :k]
        stats[s : s + len(sc), 0] = top.mean(axis=1)
        stats[s : s + len(sc), 1] = np.maximum(top.std(axis=1), SD_FLOOR)
    return Normaliser(stats, cohort.astype(np.float32), cohort_labels, k)


def impostor_scores(
    norm: Normaliser, vectors: np.ndarray, labels: np.ndarray, identities: int, pairs: int = PAIRS_FOR_TAIL
) -> np.ndarray:
    """Normalised scores of impostor comparisons: every cohort member (as a probe; a gallery identity's
    template left out of its own search) against the templates of every other identity, the templates
    sampled evenly to at most ``pairs`` comparisons in all."""
    tmpl = templates(vectors, labels, identities)
    step = max(1, int(np.ceil(len(norm.cohort) * identities / pairs)))
    cols = np.arange(0, identities, step)
    out = []
    for p in range(len(norm.cohort)):
        own = int(norm.cohort_labels[p])
        c = cols[cols != own]
        cs = norm.cohort @ norm.cohort[p]
        if own >= 0:
            cs[norm.cohort_labels == own] = -np.inf  # the probe is not in the gallery it is searched in
        out.append(norm.normalise(tmpl[c] @ norm.cohort[p], c, cs).astype(np.float32))
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def tail(scores: np.ndarray, points: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """(ascending scores, descending FAR) of the upper tail, FAR 10% down to 10 comparisons in all."""
    s = np.sort(np.asarray(scores, np.float64))[::-1]
    n = len(s)
    if n < 1000:
        raise ValueError(f"{n} impostor comparisons are too few to measure a tail")
    ranks = np.unique(np.geomspace(10, n / 10, points).astype(np.int64))
    return s[ranks - 1][::-1], (ranks / n)[::-1]


def derive_threshold(
    norm: Normaliser, vectors: np.ndarray, labels: np.ndarray, identities: int, target_fpir: float
) -> tuple[float, dict[str, float]]:
    """The bundle's normalised decision threshold: the lowest score at which a probe of someone not
    enrolled matches one of ``identities`` templates with probability <= ``target_fpir``, i.e.
    1 - (1 - FAR(t))^identities, FAR(t) measured on this gallery's own impostor comparisons (see
    :func:`impostor_scores`) and extrapolated log-linearly past the measured tail as for raw cosine
    (edgeface/vision/calibration.py). Returns it and what it was measured on."""
    from ..vision.calibration import threshold_for_tail

    imp = impostor_scores(norm, vectors, labels, identities)
    sims, far = tail(imp)
    t = threshold_for_tail(sims, far, identities, target_fpir)
    return round(float(t), 4), {"impostor_pairs": int(len(imp)), "far_measured_down_to": float(far[-1])}
