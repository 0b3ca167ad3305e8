"""The converted dlib ResNet against dlib's own descriptors, with runtime dependencies only.

The fixtures (tests/vision/fixtures, made by models/make_fidelity_fixtures.py) are dlib-aligned
chips of the public-domain test photos and the descriptors dlib computed for them, so CI checks the
.tflite files against dlib without building dlib.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeface.vision.cards import ModelCard, find_card
from edgeface.vision.models.embedder import Embedder
from edgeface.vision.runtime.loader import runtime_info

FIXTURES = Path(__file__).parent / "fixtures"
MIN_COSINE = {
    "dlib-resnet-v1-float32": 0.9999,
    "dlib-resnet-v1-int8": 0.9993,
}  # int8 measured: min 0.99961 here, 0.99940 on 1,000 held-out LFW chips
CONV_LAYERS = 29  # dlib's ResNet: the 7x7 stem + 14 blocks of two 3x3 convolutions


@pytest.fixture(scope="module")
def fixtures() -> tuple[list[str], np.ndarray, np.ndarray]:
    index = json.loads((FIXTURES / "descriptors.json").read_text())
    names = [c["file"] for c in index["chips"]]
    chips = np.stack([np.asarray(Image.open(FIXTURES / n).convert("RGB")) for n in names])
    descriptors = np.asarray([c["descriptor"] for c in index["chips"]], dtype=np.float64)
    return names, chips, descriptors


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _interpreter(card: ModelCard):
    interp = runtime_info().module.Interpreter(model_content=card.read_model())
    interp.allocate_tensors()
    return interp


def test_fixtures_are_complete(fixtures):
    names, chips, descriptors = fixtures
    assert len(names) >= 30
    assert chips.shape[1:] == (150, 150, 3) and chips.dtype == np.uint8
    assert descriptors.shape == (len(names), 128)
    norms = np.linalg.norm(descriptors, axis=1)
    assert np.all((norms > 1.0) & (norms < 2.0)), "dlib's raw descriptors have norm about 1.4"


@pytest.mark.parametrize("model_id", sorted(MIN_COSINE))
def test_matches_dlib_on_every_fixture_chip(model_id, fixtures):
    names, chips, descriptors = fixtures
    embedder = Embedder(find_card(model_id, task="embedder"))
    got = embedder.raw(chips).astype(np.float64)
    cos = _cosines(got, descriptors)
    worst = int(np.argmin(cos))
    assert cos[worst] >= MIN_COSINE[model_id], (
        f"{model_id}: cosine to dlib {cos[worst]:.6f} on {names[worst]} (< {MIN_COSINE[model_id]}); "
        f"mean {cos.mean():.6f}"
    )
    # embed() is the same vector, L2-normalised; one chip at a time gives the same as a batch.
    unit = embedder.embed(chips[:3])
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(embedder.embed(chips[0]), unit[0], atol=1e-5)


def test_float32_is_dlib_to_float_rounding(fixtures):
    _, chips, descriptors = fixtures
    got = Embedder(find_card("dlib-resnet-v1-float32", task="embedder")).raw(chips)
    assert np.abs(got - descriptors).max() < 1e-4


def test_int8_file_is_small_and_matches_its_card():
    card = find_card("dlib-resnet-v1-int8", task="embedder")
    assert card.model_path.stat().st_size < 8 * 1024 * 1024
    card.read_model(verify=True)  # raises if the SHA-256 differs from the card's


def test_int8_is_full_integer_with_per_channel_weights():
    card = find_card("dlib-resnet-v1-int8", task="embedder")
    interp = _interpreter(card)
    (inp,) = interp.get_input_details()
    (out,) = interp.get_output_details()
    assert inp["dtype"] == np.int8 and out["dtype"] == np.int8
    # Raw pixels map exactly: q = pixel - 128.
    assert inp["quantization"] == (1.0, -128)
    assert out["name"] == card.embedder.output
    q = card.raw["quantization"]
    assert (q["input_scale"], q["input_zero_point"]) == inp["quantization"]
    assert (q["output_scale"], q["output_zero_point"]) == pytest.approx(out["quantization"])

    weights = [
        d
        for d in interp.get_tensor_details()
        if d["dtype"] == np.int8 and len(d["shape"]) in (2, 4) and d["index"] != inp["index"] and d["shape"][0] != 1
    ]
    convs = [d for d in weights if len(d["shape"]) == 4]
    dense = [d for d in weights if len(d["shape"]) == 2]
    assert len(convs) == CONV_LAYERS and len(dense) == 1
    for d in weights:
        qp = d["quantization_parameters"]
        assert len(qp["scales"]) == d["shape"][0] > 1, f"{d['name']} is not quantized per channel"
        assert qp["quantized_dimension"] == 0
        assert np.all(qp["zero_points"] == 0)
    float_tensors = [d["name"] for d in interp.get_tensor_details() if d["dtype"] == np.float32]
    assert not float_tensors, f"float tensors left in the int8 model: {float_tensors}"


def test_cards_describe_their_inputs():
    for model_id, dtype in (("dlib-resnet-v1-float32", np.float32), ("dlib-resnet-v1-int8", np.int8)):
        card = find_card(model_id, task="embedder")
        (inp,) = _interpreter(card).get_input_details()
        assert card.raw["input"]["dtype"] == np.dtype(dtype).name
        assert inp["dtype"] == dtype
        assert tuple(inp["shape"][1:]) == (card.input.height, card.input.width, 3)
        assert card.licence == "CC0-1.0"
        assert card.embedder.dim == 128
