"""Backends per model: each model of the chain gets its own backend, and one that cannot be loaded runs on
the CPU with a warning that names the model, the backend and why (or refuses to start, if so configured)."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest

from edgeface.config import Config
from edgeface.errors import BackendUnavailable, ConfigError
from edgeface.vision.engine import Engine
from edgeface.vision.settings import RuntimeConfig


def _engine(**runtime: object) -> Engine:
    return Engine(dataclasses.replace(Config(), runtime=RuntimeConfig(num_threads=1, **runtime)))  # type: ignore[arg-type]


def test_default_chain_runs_every_model_on_the_cpu() -> None:
    placements = _engine().placements()
    assert list(placements) == ["detector", "landmarks", "embedder"]
    assert all(p.backend == "cpu" and p.wanted == "cpu" and not p.fell_back for p in placements.values())


def test_one_models_backend_falls_back_alone_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="edgeface")
    engine = _engine(embedder_backend="edgetpu")
    assert engine.backends() == {"detector": "cpu", "landmarks": "cpu", "embedder": "cpu"}
    embedder = engine.placements()["embedder"]
    assert embedder.wanted == "edgetpu" and embedder.fell_back and "No Edge TPU was detected" in embedder.reason
    records = [r for r in caplog.records if r.getMessage() == "model.backend_fallback"]
    assert len(records) == 1  # the detector and the landmark model were never tried on the Edge TPU
    fields = records[0].edgeface_fields  # type: ignore[attr-defined]
    assert fields["role"] == "embedder" and fields["model"] == engine.embedder_card.id
    assert fields["backend"] == "edgetpu" and fields["on"] == "cpu" and "libedgetpu" in fields["reason"]
    # and the chain still embeds
    vec = engine.embed(np.zeros((112, 112, 3), np.uint8))
    assert vec.shape == (engine.embedder_card.embedder.dim,)  # type: ignore[union-attr]


def test_global_backend_applies_to_models_without_their_own() -> None:
    engine = _engine(backend="gpu", embedder_backend="cpu")
    placements = engine.placements()
    assert placements["detector"].wanted == "gpu" and placements["landmarks"].wanted == "gpu"
    assert placements["embedder"].wanted == "cpu" and not placements["embedder"].fell_back
    assert "GPU delegate" in placements["detector"].reason


def test_fallback_off_refuses_to_start() -> None:
    engine = _engine(detector_backend="edgetpu", fallback=False)
    with pytest.raises(BackendUnavailable, match="No Edge TPU was detected"):
        _ = engine.detector


def test_a_configuration_error_is_not_hidden_by_the_fallback() -> None:
    engine = _engine(landmarks_backend="external")  # external needs runtime.delegate_path
    with pytest.raises(ConfigError, match="runtime.delegate_path"):
        engine.backends()


def test_per_model_backends_are_settings_with_the_allowed_values() -> None:
    from edgeface.config.loader import load_config

    assert (
        load_config(None, env={}, overrides=["runtime.embedder_backend=edgetpu"]).runtime.embedder_backend == "edgetpu"
    )
    with pytest.raises(ConfigError, match="embedder_backend"):
        load_config(None, env={}, overrides=["runtime.embedder_backend=tpu"])
