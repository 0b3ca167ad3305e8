"""Nearest-neighbour search over a gallery's vectors: Annoy for candidates, exact cosine to rank them.

Vectors are L2-normalised float32, memory-mapped from ``vectors.npy``; the Annoy index is memory-mapped
by ``AnnoyIndex.load``. Neither is copied into the process heap.

Face embeddings are crowded: they share a large common component (dlib: two strangers still have cosine
~0.86) and most of their spread lies in a few dozen directions; the remaining dimensions are mostly noise
that makes random-projection trees split badly. So the Annoy index is built over the embeddings centred
and projected on their principal components (enough to keep 90% of the variance, 48 of 128 for dlib),
where Euclidean distance approximates the full one; Annoy returns the best ``candidates`` there, and
their cosine is then computed exactly from the full stored vectors. Every score reported is exact; only
recall depends on the index. Measured on LFW + fitted distractors at 1M (``edgeface bench index``), the
projection reaches recall@1 0.99 with about half the inspected nodes of a full-dimension index, each
node a third the size.

:func:`plan_for` chooses trees and ``search_k`` (nodes inspected per query) from the gallery size, and
galleries small enough that a full scan is as fast are scanned exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from annoy import AnnoyIndex

ANNOY_METRIC: Literal["euclidean"] = "euclidean"  # in the projected space (see the module docstring)
DEFAULT_SEED = 1
EXACT_MAX = 20_000  # up to here a BLAS scan of the mmapped vectors is as fast as the index on one core
KEEP_VARIANCE = 0.90
CANDIDATES = 32  # re-ranked exactly per query (at least k)


@dataclass(frozen=True)
class SearchPlan:
    """How a gallery of ``count`` vectors is searched."""

    exact: bool
    trees: int
    search_k: int

    def to_dict(self) -> dict[str, int | bool]:
        return {"exact": self.exact, "trees": self.trees, "search_k": self.search_k}


def trees_for(count: int) -> int:
    """Annoy trees: 32 at 100k, 64 at 1M (measured), fewer for small galleries."""
    return int(min(96, max(8, round(32 * (max(count, 1) / 1e5) ** 0.3))))


def search_k_for(count: int) -> int:
    """Nodes inspected per query: 16k at 100k, ~53k at 1M hold recall@1 >= 0.99 (measured on LFW + fitted
    distractors, one quiet core: 0.9907 at 1M with p99 9.8 ms; 57k gave the same recall at 10.9 ms);
    10k at least, where it costs well under 1 ms."""
    return int(min(max(count, 1) * 64, max(10000, round(16000 * (max(count, 1) / 1e5) ** 0.52))))


def plan_for(
    count: int, *, exact_max: int | None = None, search_k: int | None = None, trees: int | None = None
) -> SearchPlan:
    exact_max = EXACT_MAX if exact_max is None else exact_max
    return SearchPlan(
        exact=count <= exact_max, trees=trees or trees_for(count), search_k=search_k or search_k_for(count)
    )


def fit_projection(vectors: np.ndarray, keep: float = KEEP_VARIANCE, sample: int = 200_000) -> np.ndarray:
    """(d + 1, D) float32: the mean, then the top ``d`` principal directions keeping ``keep`` of the variance.

    ``d`` is rounded up to a multiple of 8. Computed on an evenly strided sample, deterministically.
    """
    n, dim = vectors.shape
    if n < 2:
        return np.vstack([np.zeros((1, dim)), np.eye(dim)]).astype(np.float32)
    x = np.asarray(vectors[:: max(1, n // sample)], np.float64)
    mean = x.mean(axis=0)
    w, u = np.linalg.eigh(np.cov((x - mean).T))
    w, u = w[::-1], u[:, ::-1]
    frac = np.cumsum(np.maximum(w, 0)) / max(float(np.maximum(w, 0).sum()), 1e-30)
    d = int(np.searchsorted(frac, keep) + 1)
    d = min(dim, max(8, -(-d // 8) * 8))
    u = u[:, :d]
    u = u * np.where(u[np.abs(u).argmax(axis=0), np.arange(d)] < 0, -1.0, 1.0)  # fixed signs
    return np.vstack([mean[None], u.T]).astype(np.float32)


def project(projection: np.ndarray, x: np.ndarray) -> np.ndarray:
    out: np.ndarray = (np.asarray(x, np.float32) - projection[0]) @ projection[1:].T
    return out


def build_annoy(vectors: np.ndarray, path: Path, trees: int, projection: np.ndarray, seed: int = DEFAULT_SEED) -> None:
    """Write an Annoy index of the projected ``vectors`` to ``path``, reproducibly (fixed seed, one thread).

    Built straight into the file (``on_disk_build``) so a 1M index never sits in RAM as well (callers
    write into a folder that is renamed into place when complete). One thread because Annoy's
    multi-threaded build places nodes in a racy order; with one it is byte-identical for the same
    vectors, seed and CPU, which lets a device rebuild it from a delta and check its hash.
    """
    n = len(vectors)
    index = AnnoyIndex(projection.shape[0] - 1, ANNOY_METRIC)
    index.set_seed(seed)
    index.on_disk_build(str(path))
    for start in range(0, n, 65536):
        block = project(projection, vectors[start : start + 65536])
        for i, v in enumerate(block):
            index.add_item(start + i, v)
    index.build(trees, n_jobs=1)
    index.unload()


class VectorIndex:
    """Top-k search by cosine similarity over memory-mapped, L2-normalised vectors."""

    def __init__(
        self, vectors: np.ndarray, annoy_path: Path | None, plan: SearchPlan, projection: np.ndarray | None = None
    ) -> None:
        if vectors.ndim != 2:
            raise ValueError(f"vectors must be (N, D), got {vectors.shape}")
        self.vectors = vectors
        self.plan = plan
        self.projection = projection
        self.annoy: AnnoyIndex | None = None
        if not plan.exact and len(vectors):
            if annoy_path is None or projection is None:
                raise ValueError("an Annoy index and its projection are needed unless the plan is an exact scan")
            self.annoy = AnnoyIndex(projection.shape[0] - 1, ANNOY_METRIC)
            # mmap, populated now: a query never waits for a page fault (on a unit the decrypted index is
            # in RAM already, so this costs nothing more there)
            self.annoy.load(str(annoy_path), prefault=True)
            if self.annoy.get_n_items() != len(vectors):
                raise ValueError(f"{annoy_path} holds {self.annoy.get_n_items()} items, the vectors {len(vectors)}")

    def __len__(self) -> int:
        return len(self.vectors)

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows and cosine similarities of the ``k`` nearest vectors to ``query`` (D,), best first."""
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        n = len(self.vectors)
        k = min(k, n)
        if k <= 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        if self.annoy is None:
            return self._exact(q, k)
        assert self.projection is not None
        rows = np.asarray(
            self.annoy.get_nns_by_vector(project(self.projection, q), max(k, CANDIDATES), search_k=self.plan.search_k),
            dtype=np.int64,
        )
        rows.sort()  # sequential access into the memory map
        scores = self.vectors[rows] @ q
        order = np.argsort(-scores, kind="stable")[:k]
        return rows[order], scores[order]

    def _exact(self, q: np.ndarray, k: int, chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.vectors)
        if n <= chunk:
            scores = self.vectors @ q
        else:
            scores = np.empty(n, np.float32)
            for s in range(0, n, chunk):
                scores[s : s + chunk] = self.vectors[s : s + chunk] @ q
        top = np.argpartition(-scores, k - 1)[:k] if k < n else np.arange(n)
        order = top[np.argsort(-scores[top], kind="stable")]
        return order.astype(np.int64), scores[order]

    def close(self) -> None:
        if self.annoy is not None:
            self.annoy.unload()
            self.annoy = None


def exact_top1(vectors: np.ndarray, queries: np.ndarray, chunk: int = 16384) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth for recall: the exact nearest row and its similarity for each query (Q, D)."""
    q = np.asarray(queries, np.float32)
    best = np.full(len(q), -np.inf, np.float32)
    arg = np.zeros(len(q), np.int64)
    for s in range(0, len(vectors), chunk):
        sims = q @ np.asarray(vectors[s : s + chunk]).T
        j = sims.argmax(axis=1)
        v = sims[np.arange(len(q)), j]
        better = v > best
        best[better] = v[better]
        arg[better] = j[better] + s
    return arg, best


def self_check(vectors: np.ndarray, annoy_path: Path, projection: np.ndarray, samples: int = 64, seed: int = 0) -> None:
    """Raise ValueError unless sampled rows find themselves through the index (catches a broken build)."""
    n = len(vectors)
    if n == 0:
        return
    index = VectorIndex(vectors, annoy_path, plan_for(n, exact_max=0), projection)
    try:
        rows = np.random.default_rng(seed).choice(n, size=min(samples, n), replace=False)
        misses = 0
        for r in rows:
            got, score = index.search(np.asarray(vectors[r]), 1)
            if int(got[0]) != int(r) and float(score[0]) < 0.999999:  # an exact twin may come first
                misses += 1
        if misses > max(1, len(rows) // 20):
            raise ValueError(f"index self-check failed: {misses} of {len(rows)} rows not found")
    finally:
        index.close()
