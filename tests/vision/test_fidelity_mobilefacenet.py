"""The converted MobileFaceNet against its source framework (ONNX Runtime), with runtime dependencies only.

The fixtures (tests/vision/fixtures/mobilefacenet, written by models/convert_mobilefacenet.py --fixtures)
are edgeface-aligned 112x112 chips of the public-domain test photos (each also mirrored and jittered)
and the embeddings ONNX Runtime computed from the upstream ONNX file, so CI checks the .tflite files
against the source without onnxruntime.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeface.vision.cards import find_card
from edgeface.vision.models.embedder import Embedder

FIXTURES = Path(__file__).parent / "fixtures" / "mobilefacenet"
# float32: exact rebuild (1.00000 on 1,000 held-out LFW chips). int8: min 0.976, mean 0.993 there.
MIN_COSINE = {"mobilefacenet-v1-float32": 0.9999, "mobilefacenet-v1-int8": 0.97}
MEAN_COSINE = {"mobilefacenet-v1-float32": 0.99999, "mobilefacenet-v1-int8": 0.99}


@pytest.fixture(scope="module")
def fixtures() -> tuple[list[str], np.ndarray, np.ndarray]:
    ref = json.loads((FIXTURES / "reference.json").read_text())["embeddings"]
    names = sorted(ref)
    chips = np.stack([np.asarray(Image.open(FIXTURES / n).convert("RGB")) for n in names])
    return names, chips, np.asarray([ref[n] for n in names], dtype=np.float64)


def test_fixtures_are_complete(fixtures):
    names, chips, ref = fixtures
    assert len(names) == 18 and chips.shape[1:] == (112, 112, 3) and chips.dtype == np.uint8
    assert ref.shape == (18, 128) and np.all(np.linalg.norm(ref, axis=1) > 1.0)


@pytest.mark.parametrize("model_id", sorted(MIN_COSINE))
def test_matches_the_source_on_every_fixture_chip(model_id, fixtures):
    names, chips, ref = fixtures
    got = Embedder(find_card(model_id, task="embedder")).raw(chips).astype(np.float64)
    cos = np.sum(got * ref, axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
    worst = names[int(np.argmin(cos))]
    assert cos.min() >= MIN_COSINE[model_id], f"{model_id}: cosine {cos.min():.5f} on {worst}"
    assert cos.mean() >= MEAN_COSINE[model_id], f"{model_id}: mean cosine {cos.mean():.5f}"


def test_same_person_closer_than_different_people(fixtures):
    """The int8 model on the fixture chips: Obama's photos (and their variants) agree, Biden differs."""
    names, chips, _ = fixtures
    e = Embedder(find_card("mobilefacenet-v1-int8", task="embedder")).raw(chips).astype(np.float64)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    obama = [i for i, n in enumerate(names) if n.startswith("obama") and "partial" not in n]
    biden = [i for i, n in enumerate(names) if n.startswith("biden")]
    same = min(float(e[a] @ e[b]) for a in obama for b in obama)
    different = max(float(e[a] @ e[b]) for a in obama for b in biden)
    assert same > different + 0.1, (same, different)
