"""The recognition steps the daemon's stages run on each frame, shared with ``edgeface.identify`` and
``edgeface identify`` so that a face on a workstation is judged exactly as the unit judges it.

* :func:`perceive` (the infer stage): detect, quality gate, then align and embed the faces that passed
  as one batch; a refused face keeps its quality verdict and gets no embedding.
* :func:`search` (the match stage, and a track's final match on its fused template): the gallery's
  top-k distinct identities with scores and the decision at the gallery's threshold.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..gallery.match import Decision, Gallery
    from ..vision.engine import DetectedFace, Engine


def perceive(engine: Engine, image: np.ndarray) -> list[tuple[DetectedFace, np.ndarray | None]]:
    """Every face in ``image`` (detector order) with its quality verdict and its embedding (None: refused)."""
    detected = engine.detect_and_assess(image)
    return list(zip(detected, engine.embed_detected(image, detected), strict=True))


def search(
    gallery: Gallery, embedding: np.ndarray, top_k: int | None = None, threshold: float | None = None
) -> Decision:
    """The decision for one L2-normalised embedding (``top_k`` and ``threshold``: the gallery's by default)."""
    return gallery.identify(embedding, top_k, threshold)
