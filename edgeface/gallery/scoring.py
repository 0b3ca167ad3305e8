"""From a search's nearest rows to ranked identity candidates, with raw and normalised scores.

The one place the open-set score is computed: :meth:`Gallery.identify` on the unit, anything central
that searches a bundle, and ``edgeface bench identify`` all call :func:`rank`, so a benchmark figure
is the figure of the code that runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from .cohort import IdentityRows, Normaliser, templates_of

Space = Literal["cosine", "normalised"]


@dataclass(frozen=True)
class Scored:
    identity: int  # position in the bundle's identities
    score: float  # raw cosine of the identity's best-matching enrolled image
    row: int  # that image's row
    normalised: float | None  # S-norm of the identity's template score; None without normalisation


def pool_size(top_k: int) -> int:
    """Rows to fetch from the index for ``top_k`` identities (several rows may be one identity's)."""
    return max(top_k * 4, top_k + 8, 32)


def rank(
    probe: np.ndarray,
    rows: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    top_k: int,
    *,
    norm: Normaliser | None = None,
    vectors: np.ndarray | None = None,
    by_identity: IdentityRows | None = None,
    space: Space = "cosine",
) -> list[Scored]:
    """The ``top_k`` best identities among ``rows`` (with their raw cosines ``scores``, best first),
    best first in ``space``. With ``norm`` (and the gallery's ``vectors`` and ``by_identity``), each
    candidate also gets its normalised score (see cohort.py); ``space`` "normalised" needs it."""
    best: dict[int, tuple[float, int]] = {}
    for r, s in zip(np.asarray(rows).tolist(), np.asarray(scores).tolist(), strict=True):
        lab = int(labels[r])
        if lab not in best:
            best[lab] = (float(s), int(r))
    ids = list(best)
    if norm is None or not ids:
        if space == "normalised":
            raise ValueError("ranking by normalised score needs the bundle's normalisation data")
        return [Scored(i, best[i][0], best[i][1], None) for i in ids[:top_k]]
    if vectors is None or by_identity is None:
        raise ValueError("normalised scores need the gallery's vectors and identity rows")
    q = np.asarray(probe, np.float32).reshape(-1)
    tmpl = templates_of(vectors, by_identity, ids) @ q
    normalised = norm.normalise(tmpl, np.asarray(ids), norm.cohort @ q)
    out = [Scored(i, best[i][0], best[i][1], float(n)) for i, n in zip(ids, normalised.tolist(), strict=True)]
    if space == "normalised":
        out.sort(key=lambda c: -(c.normalised if c.normalised is not None else -np.inf))
    return out[:top_k]
