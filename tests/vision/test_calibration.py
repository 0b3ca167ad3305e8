"""1:N thresholds derived from the card's impostor statistics."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edgeface.errors import ModelError
from edgeface.vision.calibration import identification_threshold, predicted_fpir
from edgeface.vision.cards import AlignmentSpec, EmbedderSpec

SIMS = np.array([0.90, 0.92, 0.94, 0.96, 0.98])
FAR = np.array([1e-2, 1e-3, 1e-4, 1e-5, 1e-6])
SPEC = EmbedderSpec(
    output="o",
    dim=4,
    metric="cosine",
    alignment=AlignmentSpec(1, 1, {}),
    thresholds={"cosine": 0.91},
    impostor_tail=(SIMS, FAR),
)


def test_threshold_rises_with_gallery_size() -> None:
    ts = [identification_threshold(SPEC, n, 0.01) for n in (1, 10, 1000, 10000)]
    assert ts == sorted(ts) and ts[0] < ts[-1]


def test_predicted_fpir_meets_the_target() -> None:
    for n in (10, 500, 5000):
        t = identification_threshold(SPEC, n, 0.01)
        assert predicted_fpir(SPEC, t, n) == pytest.approx(0.01, rel=0.35)


def test_never_below_the_one_to_one_threshold() -> None:
    assert identification_threshold(SPEC, 1, 0.5) == 0.91


def test_beyond_the_measured_tail_is_extrapolated() -> None:
    """FAR falls a decade per 0.02 here; a million entries at FPIR 10% need FAR 1.05e-7, about one decade
    past the last measured point (1e-6 at 0.98)."""
    t = identification_threshold(SPEC, 1_000_000, 0.1)
    assert t == pytest.approx(0.98 + 0.02 * np.log10(1e-6 / 1.0536e-7), abs=0.001)


def test_a_flat_tail_top_is_fitted_wider_and_a_flat_tail_refused() -> None:
    """Duplicate identities flatten the top of a measured tail: the line is fitted over more decades
    (the threshold still rises past the last measured score); a tail that never falls is refused."""
    top_flat = dataclasses.replace(SPEC, impostor_tail=(SIMS, np.array([1e-2, 1e-3, 1e-5, 1e-5, 1e-5])))
    assert identification_threshold(top_flat, 10_000_000, 0.01) > SIMS[-1]
    flat = dataclasses.replace(SPEC, impostor_tail=(SIMS, np.full(len(SIMS), 1e-5)))
    with pytest.raises(ModelError, match="recalibrate"):
        identification_threshold(flat, 10_000_000, 0.01)


def test_missing_tail_says_how_to_calibrate() -> None:
    with pytest.raises(ModelError, match="calibrate_thresholds"):
        identification_threshold(dataclasses.replace(SPEC, impostor_tail=None), 10, 0.01)


def test_gallery_thresholds_for_a_bundle() -> None:
    from edgeface.vision.calibration import gallery_thresholds

    small, large = gallery_thresholds(SPEC, 2, 0.01), gallery_thresholds(SPEC, 5000, 0.01)
    assert small["cosine_1to1"] == large["cosine_1to1"] == 0.91
    assert 0.91 <= small["cosine"] < large["cosine"] and large["target_fpir"] == 0.01
    assert gallery_thresholds(dataclasses.replace(SPEC, impostor_tail=None), 5000, 0.01)["cosine"] == 0.91
