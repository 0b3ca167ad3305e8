"""Nearest-neighbour search over a gallery's vectors: Annoy for candidates, exact cosine to rank them.

Vectors are L2-normalised float32, memory-mapped from ``vectors.npy``; the Annoy index is memory-mapped
by ``AnnoyIndex.load``. Neither is copied into the process heap, so a 1M gallery costs its pages in the
page cache once, and only the pages a query touches.

Annoy's angular distance is ``sqrt(2 - 2 cos)``, a monotone function of cosine similarity, so Annoy's
candidate order is the exact order; the re-rank computes each candidate's cosine from the stored
vectors, so every score reported is exact. Recall is governed by how many tree nodes a query inspects
(``search_k``); :func:`plan_for` chooses trees and ``search_k`` from the gallery size (measured with
``edgeface bench index``), and galleries small enough that a full scan is faster are scanned exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from annoy import AnnoyIndex

ANNOY_METRIC = "angular"
DEFAULT_SEED = 1
EXACT_MAX = 50_000  # below this a BLAS scan of the mmapped vectors beats the index on one core


@dataclass(frozen=True)
class SearchPlan:
    """How a gallery of ``count`` vectors is searched."""

    exact: bool
    trees: int
    search_k: int

    def to_dict(self) -> dict[str, int | bool]:
        return {"exact": self.exact, "trees": self.trees, "search_k": self.search_k}


def trees_for(count: int) -> int:
    """Annoy trees for a gallery of ``count`` vectors: more trees hold recall as the gallery grows."""
    if count <= 1000:
        return 8
    return int(min(64, max(8, round(8 * math.log2(count / 1000)))))


def search_k_for(count: int, trees: int) -> int:
    """Nodes inspected per query: grows slowly with the gallery so recall@1 stays >= 0.99."""
    return int(max(2000, min(count, 12 * trees * max(1.0, math.log2(max(count, 2) / 100)) ** 2)))


def plan_for(count: int, *, exact_max: int | None = None, search_k: int | None = None,
             trees: int | None = None) -> SearchPlan:
    exact_max = EXACT_MAX if exact_max is None else exact_max
    t = trees or trees_for(count)
    return SearchPlan(exact=count <= exact_max, trees=t, search_k=search_k or search_k_for(count, t))


def build_annoy(vectors: np.ndarray, path: Path, trees: int, seed: int = DEFAULT_SEED) -> None:
    """Write an Annoy index of ``vectors`` to ``path``, reproducibly (fixed seed, one build thread).

    Built straight into the file (``on_disk_build``) so a 1M index never sits in RAM as well (callers
    write into a folder that is renamed into place when complete). One thread
    because Annoy's multi-threaded build places nodes in a racy order; with one it is byte-identical for
    the same vectors, seed and CPU, which lets a device rebuild it from a delta and check its hash.
    """
    n, dim = vectors.shape
    index = AnnoyIndex(dim, ANNOY_METRIC)
    index.set_seed(seed)
    index.on_disk_build(str(path))
    for start in range(0, n, 65536):
        block = np.ascontiguousarray(vectors[start : start + 65536], dtype=np.float32)
        for i, v in enumerate(block):
            index.add_item(start + i, v)
    index.build(trees, n_jobs=1)
    index.unload()


class VectorIndex:
    """Top-k search by cosine similarity over memory-mapped, L2-normalised vectors."""

    def __init__(self, vectors: np.ndarray, annoy_path: Path | None, plan: SearchPlan) -> None:
        if vectors.ndim != 2:
            raise ValueError(f"vectors must be (N, D), got {vectors.shape}")
        self.vectors = vectors
        self.plan = plan
        self.annoy: AnnoyIndex | None = None
        if not plan.exact and len(vectors):
            if annoy_path is None:
                raise ValueError("an Annoy index file is needed unless the plan is an exact scan")
            self.annoy = AnnoyIndex(vectors.shape[1], ANNOY_METRIC)
            # mmap, populated now: a query never waits for a page fault (on a unit the decrypted index is
            # in RAM already, so this costs nothing more there)
            self.annoy.load(str(annoy_path), prefault=True)
            if self.annoy.get_n_items() != len(vectors):
                raise ValueError(f"{annoy_path} holds {self.annoy.get_n_items()} items, the vectors "
                                 f"{len(vectors)}")

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
        rows = np.asarray(self.annoy.get_nns_by_vector(q, k, search_k=self.plan.search_k), dtype=np.int64)
        rows.sort()  # sequential access into the memory map
        scores = self.vectors[rows] @ q
        order = np.argsort(-scores, kind="stable")
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


def exact_top1(vectors: np.ndarray, queries: np.ndarray, chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
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


def self_check(vectors: np.ndarray, annoy_path: Path, samples: int = 64, seed: int = 0) -> None:
    """Raise ValueError unless sampled rows find themselves through the index (catches a broken build)."""
    n = len(vectors)
    if n == 0:
        return
    index = AnnoyIndex(vectors.shape[1], ANNOY_METRIC)
    index.load(str(annoy_path))
    try:
        rows = np.random.default_rng(seed).choice(n, size=min(samples, n), replace=False)
        misses = [int(r) for r in rows
                  if int(r) not in index.get_nns_by_vector(np.asarray(vectors[r]), 1, search_k=max(1000, n // 100))]
        # exact duplicates may legitimately return the twin instead
        misses = [r for r in misses if float(np.asarray(vectors[r]) @ np.asarray(vectors[
            index.get_nns_by_vector(np.asarray(vectors[r]), 1)[0]])) < 0.999999]
        if len(misses) > max(1, len(rows) // 20):
            raise ValueError(f"index self-check failed: {len(misses)} of {len(rows)} rows not found")
    finally:
        index.unload()
