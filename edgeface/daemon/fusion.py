"""A track's faces fused into one template, matched once more before its result leaves for the outbox.

One frame of a person walking past is often a little blurred, turned or small; the mean of several
frames' embeddings usually sits closer to who they are than a single frame does, so a weak frame no
longer decides alone (tests/daemon/test_fusion.py: three LFW photos of one person, one of which alone
is "no match"; fused, the score is above each single photo's). So the match a result carries is made
on the fused template, not on one frame.

* **What is fused:** the embeddings of the track's faces that passed the quality gate (a refused face
  has none), L2-normalised, each weighted by :func:`fusion_weight`, summed and normalised again. The
  track keeps the running weighted sum (:class:`FusedTemplate`), not the embeddings: memory per track
  stays one vector however long it lasts.
* **Weight:** the quality gate's figures as :func:`~edgeface.daemon.work.capture_rank` combines them
  (detector score x size x sharpness x frontality, each in 0..1), so a sharp, frontal, large face
  counts several times more than a blurred profile that only just passed. Never below
  :data:`MIN_WEIGHT`: every fused face counts a little.
* **When:** at the track's end, which the tracker decides (:mod:`~edgeface.daemon.dedup`): its window
  of capture time ended, its source was silent for a window, or the daemon is stopping. Nothing else
  changes: fusion never decides which faces form a track, so folder photos and triggered frames are
  grouped exactly as before, and a track of one embedded face keeps the match the match stage made
  for it (no second search).
* **Fails safe:** if the fused search fails, the result leaves with the best capture's own match (logged);
  a result still leaves for every track.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..logs import get_logger
from ..vision.quality import Quality
from .work import Observation, quality_weight

if TYPE_CHECKING:
    from ..gallery.match import Decision

log = get_logger(__name__)

MIN_WEIGHT = 0.02  # a face that passed the gate counts at least this much (its figures may multiply to ~0)


def fusion_weight(quality: Quality) -> float:
    """How much one face counts in its track's template (see the module docstring)."""
    return max(MIN_WEIGHT, quality_weight(quality))


def fuse(embeddings: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The quality-weighted mean of L2-normalised embeddings (N, D), renormalised: (D,) float32."""
    e = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    w = np.ones(len(e), np.float32) if weights is None else np.asarray(weights, dtype=np.float32)
    mean = (w[:, None] * e).sum(axis=0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)


@dataclass(eq=False)
class FusedTemplate:
    """The running weighted sum of a track's embeddings (what :func:`fuse` would give for all of them)."""

    total: np.ndarray | None = None
    frames: int = 0  # faces fused so far
    weights: float = 0.0

    def add(self, embedding: np.ndarray, quality: Quality) -> None:
        e = np.asarray(embedding, dtype=np.float32)
        w = fusion_weight(quality)
        part = e * (w / max(float(np.linalg.norm(e)), 1e-12))
        self.total = part if self.total is None else self.total + part
        self.frames += 1
        self.weights += w

    @property
    def template(self) -> np.ndarray | None:
        """The fused, L2-normalised template; None while no face was embedded."""
        if self.total is None:
            return None
        return (self.total / max(float(np.linalg.norm(self.total)), 1e-12)).astype(np.float32)


@dataclass(frozen=True)
class FinalMatch:
    """The match a track's result carries, made on a template of ``frames`` faces (0: all refused)."""

    decision: Decision | None  # None: refused, or no gallery installed
    gallery_version: int | None
    threshold: float | None
    frames: int


#: The match stage's search: embedding -> (decision or None without a gallery, gallery version, threshold).
Search = Callable[[np.ndarray], "tuple[Decision | None, int | None, float | None]"]


def single(best: Observation) -> FinalMatch:
    """The best capture's own match (a track of one embedded face; 0 frames when it was refused)."""
    return FinalMatch(best.decision, best.gallery_version, best.threshold, 0 if best.embedding is None else 1)


def final_match(best: Observation, fused: FusedTemplate, search: Search) -> FinalMatch:
    """The match for a finished track: ``search`` on the fused template when 2+ faces were embedded,
    else the best capture's own match. A failed search falls back to the latter (logged), so the track
    still gets its result."""
    template = fused.template
    if best.embedding is None or template is None or fused.frames < 2:
        return single(best)
    try:
        decision, version, threshold = search(template)
    except Exception as e:  # noqa: BLE001 - the result must still leave: the best capture's match stands in
        log.error(
            "track.fusion_failed",
            source=best.source,
            frames=fused.frames,
            error=f"{type(e).__name__}: {e}",
            hint="the result carries the best capture's own match",
        )
        return single(best)
    return FinalMatch(decision, version, threshold, fused.frames)
