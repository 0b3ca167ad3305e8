"""Decision thresholds for open-set identification, from the embedder card's impostor statistics.

A 1:1 threshold (is this pair the same person?) is far too low for 1:N search: a probe of someone
not enrolled is compared with every gallery entry, and the best of N impostor scores is much
higher than a typical one. With FAR(t), the chance that one impostor comparison reaches t, the
chance that a non-enrolled probe matches anyone in a gallery of N entries is approximately
FPIR(t) = 1 - (1 - FAR(t))^N. The card carries FAR(t) measured on LFW (models/calibrate_thresholds.py);
the gallery picks the lowest t whose predicted FPIR is within the target.
"""

from __future__ import annotations

import numpy as np

from ..errors import ModelError
from ..logs import get_logger
from .cards import EmbedderSpec

log = get_logger(__name__)


def predicted_fpir(spec: EmbedderSpec, threshold: float, gallery_size: int) -> float:
    """FPIR(t) = 1 - (1 - FAR(t))^N, FAR interpolated log-linearly between the card's points."""
    sims, far = _tail(spec)
    f = float(np.exp(np.interp(threshold, sims, np.log(far))))
    return float(1.0 - (1.0 - f) ** max(1, gallery_size))


def identification_threshold(spec: EmbedderSpec, gallery_size: int, target_fpir: float) -> float:
    """The lowest similarity at which a non-enrolled probe matches someone with probability <= target.

    Never below the card's 1:1 threshold (a small gallery is still a comparison of two faces).
    """
    sims, far = _tail(spec)
    t = min(1.0, threshold_for_tail(sims, far, gallery_size, target_fpir))  # cosine ends at 1
    return max(t, spec.thresholds.get("cosine", -1.0))


def threshold_for_tail(sims: np.ndarray, far: np.ndarray, gallery_size: int, target_fpir: float) -> float:
    """The lowest score t with 1 - (1 - FAR(t))^N <= target, for any score whose per-comparison impostor
    tail (ascending ``sims``, descending ``far``) is known: the card's raw cosine, or a bundle's
    normalised score (edgeface/gallery/cohort.py). Beyond the measured tail it extrapolates (logged)."""
    if not 0 < target_fpir < 1:
        raise ValueError(f"target FPIR must be in (0, 1), got {target_fpir}")
    n = max(1, gallery_size)
    # per-comparison FAR that gives the target FPIR over n independent impostor comparisons
    far_needed = -np.expm1(np.log1p(-target_fpir) / n)  # 1 - (1 - fpir)^(1/n), exact for tiny values
    if far_needed < far[-1]:
        t = _extrapolate(sims, far, far_needed)
        log.warning(
            "calibration.extrapolated",
            gallery_size=n,
            target_fpir=target_fpir,
            far_needed=far_needed,
            far_measured_down_to=float(far[-1]),
            threshold=round(t, 4),
        )
        return t
    # log FAR falls with similarity: invert the same log-linear interpolation predicted_fpir uses
    return float(np.interp(np.log(far_needed), np.log(far[::-1]), sims[::-1]))


def _extrapolate(sims: np.ndarray, far: np.ndarray, far_needed: float) -> float:
    """Beyond the measured tail: continue the straight line of log FAR over the last decade measured.

    Impostor tails of cosine similarity fall roughly exponentially there; the estimate is logged as
    extrapolated, and the bench reports measured FPIR wherever it can be measured. The very top of a
    measured tail can be flat: a few "impostor" pairs that are really one person (a duplicate identity,
    the same photo under two names) score like genuine pairs. Then the line is fitted over the last two
    or three decades instead; if even that does not fall, the threshold is the highest impostor score
    measured (logged), rather than a line through duplicates.
    """
    for decades in (1, 2, 3):
        tail = far <= far[-1] * 10**decades
        if tail.sum() < 2:
            tail[-2:] = True
        slope, intercept = np.polyfit(sims[tail], np.log(far[tail]), 1)
        if slope <= -1.0:  # log FAR must fall clearly (real tails: tens to hundreds per unit of similarity)
            if decades > 1:
                log.warning("calibration.flat_tail_top", decades_fitted=decades, slope=round(float(slope), 2))
            return float((np.log(far_needed) - intercept) / slope)
    if len(sims) >= 2 and far[0] > far[-1] * 10:  # it falls, only not at its top
        log.warning("calibration.flat_tail", threshold=float(sims[-1]), far_measured_down_to=float(far[-1]))
        return float(sims[-1])
    raise ModelError("the impostor tail does not fall with the score; recalibrate it")


def _tail(spec: EmbedderSpec) -> tuple[np.ndarray, np.ndarray]:
    tail = spec.impostor_tail
    if tail is None:
        raise ModelError(
            "the embedder card has no [thresholds.impostor_tail] (similarity and far lists); calibrate it "
            "with models/calibrate_thresholds.py, or set gallery.threshold explicitly"
        )
    return tail


def gallery_thresholds(spec: EmbedderSpec, gallery_size: int, target_fpir: float) -> dict[str, float]:
    """What a bundle carries: ``cosine`` is the 1:N decision threshold for this gallery's size at the
    target FPIR (the 1:1 threshold where the card has no impostor statistics), ``cosine_1to1`` the
    card's pair threshold, ``target_fpir`` the target used."""
    if "cosine" not in spec.thresholds:
        raise ModelError(
            "the embedder card has no calibrated [thresholds] cosine value; run models/calibrate_thresholds.py"
        )
    one = spec.thresholds["cosine"]
    if spec.impostor_tail is None:
        log.warning("calibration.no_impostor_tail", threshold=one)
        return {"cosine": one, "cosine_1to1": one}
    t = identification_threshold(spec, gallery_size, target_fpir)
    return {"cosine": round(t, 4), "cosine_1to1": one, "target_fpir": target_fpir}
