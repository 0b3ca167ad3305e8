"""Model cards are typed by task, and the bundled ones are found wherever the package is."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

from edgeface.errors import ModelError
from edgeface.vision.cards import bundled_models_dir, find_card, list_cards, load_card
from edgeface.vision.models.facemesh import FaceMesh
from edgeface.vision.runtime.backends import BACKENDS
from edgeface.vision.settings import RuntimeConfig

REPO = Path(__file__).resolve().parents[2]


def test_bundled_models_are_the_repos_models_folder_in_a_checkout() -> None:
    folder = bundled_models_dir()
    assert folder == REPO / "models" or folder == REPO / "edgeface" / "_models"
    ids = {c.id for c in list_cards()}
    assert {"blazeface-short-range", "mediapipe-face-mesh", "dlib-resnet-v1-int8"} <= ids


@pytest.mark.parametrize(
    ("model_id", "task"),
    [("blazeface-short-range", "detector"), ("dlib-resnet-v1-int8", "embedder"), ("mediapipe-face-mesh", "landmarks")],
)
def test_each_card_carries_exactly_its_tasks_spec(model_id: str, task: str) -> None:
    card = find_card(model_id, task=task)
    specs = {"detector": card.detector, "embedder": card.embedder, "landmarks": card.landmarks}
    assert [t for t, s in specs.items() if s is not None] == [task]


def test_landmarks_spec_from_the_card() -> None:
    spec = find_card("mediapipe-face-mesh").landmarks
    assert spec is not None and spec.count == 468 and spec.roi_scale == 1.5 and spec.min_presence == 0.5


def test_a_landmarks_card_without_its_tensors_is_refused(tmp_path: Path) -> None:
    src = find_card("mediapipe-face-mesh")
    text = src.path.read_text().replace('points = "conv2d_20"', "")
    (tmp_path / "mediapipe-face-mesh.toml").write_text(text)
    with pytest.raises(ModelError, match=r"\[landmarks\] needs points, presence, count"):
        load_card(tmp_path / "mediapipe-face-mesh.toml")


def test_a_detector_card_is_not_a_landmark_model() -> None:
    with pytest.raises(ModelError, match="not a landmark model"):
        FaceMesh(find_card("blazeface-short-range"))


def test_every_configurable_backend_is_in_the_table() -> None:
    names = typing.get_args(typing.get_type_hints(RuntimeConfig)["backend"])
    assert set(names) == set(BACKENDS)
    for b in BACKENDS.values():
        assert b.delegate == bool(b.advice), b.name  # every delegate says what to do when it fails
        assert b.delegate or not b.library
