"""The recognition steps the daemon's stages run on each frame, shared with ``edgeface.identify`` and
``edgeface identify`` so that a face on a workstation is judged exactly as the unit judges it.

* :func:`perceive` (the infer stage): detect, quality gate, then align and embed the faces that passed
  as one batch; a refused face keeps its quality verdict and gets no embedding.
* :func:`search` (the match stage, and a track's final match on its fused template): the gallery's
  top-k distinct identities with scores and the decision at the gallery's threshold.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..gallery.match import Decision, Gallery
    from ..vision.engine import DetectedFace, Engine

Observe = Callable[[str, float], None]  # (stage, seconds): Metrics.observe


def perceive(
    engine: Engine, image: np.ndarray, observe: Observe | None = None
) -> list[tuple[DetectedFace, np.ndarray | None]]:
    """Every face in ``image`` (detector order) with its quality verdict and its embedding (None: refused).

    ``observe(stage, seconds)``, when given, gets the time of each step: detect (the frame), quality and
    align (each face), embed (the frame's batch): the daemon's stage histograms. The same steps as
    ``Engine.detect_and_assess`` then ``Engine.embed_detected``, cut where the clock is read."""
    from ..vision.engine import DetectedFace

    observe = observe or _ignore

    t = time.perf_counter()
    faces = engine.detect(image)
    t = _lap(observe, "detect", t)
    detected = []
    for f in faces:
        detected.append(DetectedFace(f, engine.assess(image, f)))
        t = _lap(observe, "quality", t)
    out: list[np.ndarray | None] = [None] * len(detected)
    passed = [i for i, d in enumerate(detected) if d.quality.passed]
    if passed:
        chips = []
        for i in passed:
            chips.append(engine.align(image, detected[i].face))
            t = _lap(observe, "align", t)
        vecs = np.atleast_2d(engine.embed(np.stack(chips)))
        _lap(observe, "embed", t)
        for k, i in enumerate(passed):
            out[i] = vecs[k]
    return list(zip(detected, out, strict=True))


def _ignore(stage: str, seconds: float) -> None:
    return None


def _lap(observe: Observe, stage: str, t0: float) -> float:
    now = time.perf_counter()
    observe(stage, now - t0)
    return now


def search(
    gallery: Gallery, embedding: np.ndarray, top_k: int | None = None, threshold: float | None = None
) -> Decision:
    """The decision for one L2-normalised embedding (``top_k`` and ``threshold``: the gallery's by default)."""
    return gallery.identify(embedding, top_k, threshold)
