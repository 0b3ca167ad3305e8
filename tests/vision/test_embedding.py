"""The embedder in the engine: normalised vectors, batches, flip fusion, face-mesh alignment, and
a small real-data check that the whole pipeline tells people apart."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeface.config import Config
from edgeface.evaluation import lfw
from edgeface.vision.engine import Engine
from edgeface.vision.settings import AlignConfig, EmbedConfig


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(Config())


@pytest.fixture(scope="module")
def chip(engine: Engine, obama: np.ndarray) -> np.ndarray:
    return engine.align(obama, engine.detect(obama)[0])


def test_unit_vectors_single_and_batch(engine: Engine, chip: np.ndarray) -> None:
    one = engine.embed(chip)
    assert one.shape == (128,) and one.dtype == np.float32
    assert np.linalg.norm(one) == pytest.approx(1.0, abs=1e-5)
    batch = engine.embed(np.stack([chip, chip[:, ::-1], chip]))
    assert batch.shape == (3, 128)
    assert np.allclose(batch[0], one, atol=1e-5) and np.allclose(batch[2], one, atol=1e-5)


def test_batch_larger_than_interpreter_batch(chip: np.ndarray) -> None:
    engine = Engine(dataclasses.replace(Config(), embed=EmbedConfig(batch_size=2)))
    out = engine.embed(np.stack([chip] * 5))
    assert out.shape == (5, 128) and np.allclose(out, out[0], atol=1e-5)


def test_flip_fusion_is_mirror_invariant(chip: np.ndarray) -> None:
    fused = Engine(dataclasses.replace(Config(), embed=EmbedConfig(flip_fusion=True)))
    plain = Engine(dataclasses.replace(Config(), embed=EmbedConfig(flip_fusion=False)))
    mirrored = np.ascontiguousarray(chip[:, ::-1])
    assert np.allclose(fused.embed(chip), fused.embed(mirrored), atol=1e-4)
    assert not np.allclose(plain.embed(chip), plain.embed(mirrored), atol=1e-3)


def test_card_decides_flip_fusion_by_default(engine: Engine) -> None:
    assert engine.flip_fusion is engine.embedder_card.embedder.flip_fusion  # type: ignore[union-attr]


def test_wrong_chip_size_is_refused(engine: Engine) -> None:
    with pytest.raises(ValueError, match="112x112x3"):
        engine.embed(np.zeros((150, 150, 3), np.uint8))


def test_mesh_refinement_is_used_and_can_be_turned_off(engine: Engine, obama: np.ndarray) -> None:
    face = engine.detect(obama)[0]
    refined = engine.refine(obama, face)
    assert refined.landmarks is not None and refined.landmarks.shape == (468, 2)
    plain = Engine(dataclasses.replace(Config(), align=AlignConfig(refine=False)))
    assert plain.refiner is None
    a, b = engine.embed(engine.align(obama, face)), plain.embed(plain.align(obama, face))
    assert 0.9 < float(a @ b) < 0.9999  # same face, slightly different chips


def test_same_person_closer_than_different_people(engine: Engine, images_dir: Path) -> None:
    def vec(name: str) -> np.ndarray:
        img = engine.load_image(images_dir / name)
        return engine.embed(engine.align(img, engine.detect(img)[0]))

    threshold = engine.embedder_card.embedder.thresholds["cosine"]  # type: ignore[union-attr]
    obama, obama3, biden = vec("obama.jpg"), vec("obama3.jpg"), vec("biden.jpg")
    assert obama @ obama3 >= threshold > obama @ biden


def test_lfw_pairs_sample(engine: Engine, lfw_root: Path) -> None:
    """60 View 2 pairs (30 same, 30 different) through the whole pipeline at the card's threshold."""
    pairs = lfw.pairs(lfw_root)
    sample = pairs[:30] + pairs[300:330]
    threshold = engine.embedder_card.embedder.thresholds["cosine"]  # type: ignore[union-attr]
    correct = 0
    for p in sample:
        va, vb = (
            engine.embed(engine.align(img, engine.detect(img)[0]))
            for img in (engine.load_image(p.a), engine.load_image(p.b))
        )
        correct += (float(va @ vb) >= threshold) == p.same
    assert correct >= 57, f"{correct}/60 pairs decided correctly"


def test_embed_cli(tmp_path: Path, images_dir: Path) -> None:
    blank = tmp_path / "blank.png"
    from PIL import Image

    Image.new("RGB", (80, 60), (90, 90, 90)).save(blank)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really")
    args = [str(images_dir / "biden.jpg"), str(blank), str(bad)]
    r = subprocess.run(
        [sys.executable, "-m", "edgeface", "embed", "--json", *args], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 1, r.stderr
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["image"] for x in recs] == args
    face = recs[0]["faces"][0]
    assert len(face["embedding"]) == 128 and abs(np.linalg.norm(face["embedding"]) - 1) < 1e-4
    assert face["box"] and face["quality"]["passed"] and recs[0]["model"] == "mobilefacenet-v1-int8"
    assert recs[1]["faces"] == [] and "error" in recs[2]
