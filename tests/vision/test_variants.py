"""Compiled variants and embedding spaces, through a real delegate library standing in for the Edge TPU.

The stand-in (tests/vision/standin_delegate.c, built here with the system C compiler) is a real TFLite
external delegate: the runtime loads it, creates it with our options and hands it the model's graph; it
counts the nodes it is shown and claims none, so the CPU kernels compute. The variant is the int8
MobileFaceNet with its batch fixed at 1 (the file `edgetpu_compiler` takes): its own file and SHA-256, the
reference's computation. What this proves and what only hardware can: see standin_delegate.c and
docs/field-unit.md ("Accelerators").
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from PIL import Image

from edgeface.config import Config
from edgeface.errors import BundleRejected, ConfigError, ModelError
from edgeface.gallery.bundle import verify_bundle
from edgeface.gallery.manifest import EmbedderRef
from edgeface.gallery.match import Gallery
from edgeface.gallery.publish import publish, publish_for
from edgeface.gallery.store import unit_embedder
from edgeface.vision.cards import bundled_models_dir, check_variant, find_card, load_card
from edgeface.vision.engine import Engine
from edgeface.vision.runtime.edgetpu import check
from edgeface.vision.runtime.oplist import list_ops, with_static_batch
from edgeface.vision.settings import ModelsConfig, RuntimeConfig
from edgeface.vision.variants import make_variant_card

HERE = Path(__file__).parent
REFERENCE = "mobilefacenet-v1-int8"
VARIANT = "mobilefacenet-v1-int8-standin"
CONV_2D = 3  # BuiltinOperator.CONV_2D


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the stand-in delegate (Debian: apt-get install build-essential)")
    out = tmp_path_factory.mktemp("delegate") / "libstandin_delegate.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", str(out), str(HERE / "standin_delegate.c")], check=True)
    return out


@pytest.fixture(scope="module")
def chips() -> np.ndarray:
    folder = HERE / "fixtures" / "mobilefacenet"
    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))])


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory, standin: Path, chips: np.ndarray) -> Path:
    """The bundled models plus a variant card made by make_variant_card, measured through the stand-in."""
    d = tmp_path_factory.mktemp("models")
    for f in bundled_models_dir().iterdir():
        if f.suffix in (".toml", ".tflite"):
            (d / f.name).symlink_to(f)
    reference = find_card(REFERENCE, d)
    variant_file = d / "mobilefacenet_v1_int8_b1.tflite"
    variant_file.write_bytes(with_static_batch(reference.read_model()))
    make_variant_card(
        reference,
        variant_file,
        model_id=VARIANT,
        backend="edgetpu",
        batch=1,
        chips=chips,
        runtime=RuntimeConfig(num_threads=1, delegate_path=str(standin)),
        made_with="edgeface.vision.runtime.oplist.with_static_batch (the stand-in for edgetpu_compiler's output)",
        hardware="stand-in delegate, no Edge TPU",
    )
    return d


def _engine(models_dir: Path, standin: Path, **runtime: object) -> Engine:
    return Engine(
        dataclasses.replace(
            Config(),
            models=ModelsConfig(dir=models_dir, embedder=VARIANT),
            runtime=RuntimeConfig(num_threads=1, delegate_path=str(standin), **runtime),  # type: ignore[arg-type]
        )
    )


def test_the_variant_card_names_its_reference_space_and_fidelity(models_dir: Path) -> None:
    reference, variant = find_card(REFERENCE, models_dir), find_card(VARIANT, models_dir)
    assert variant.sha256 != reference.sha256  # its own file
    assert variant.embedder and reference.embedder and variant.embedder.space == reference.embedder.space
    v = variant.variant
    assert v is not None and v.of == REFERENCE and v.of_sha256 == reference.sha256
    assert v.backend == "edgetpu" and v.batch == 1
    # the fixed-batch file computes exactly what the reference computes: cosine 1 on every chip
    assert v.fidelity is not None and v.fidelity.min_cosine >= 0.99999 and "stand-in" in v.fidelity.measured
    assert variant.space_sha256 == {variant.sha256, reference.sha256}
    check_variant(variant, reference)


def test_a_variant_that_does_not_match_its_reference_is_refused(models_dir: Path, tmp_path: Path) -> None:
    text = (models_dir / f"{VARIANT}.toml").read_text()
    reference = find_card(REFERENCE, models_dir)
    wrong = text.replace(f'of_sha256 = "{reference.sha256}"', f'of_sha256 = "{"0" * 64}"')
    (tmp_path / f"{VARIANT}.toml").write_text(wrong)
    with pytest.raises(ModelError, match="does not match its reference"):
        check_variant(load_card(tmp_path / f"{VARIANT}.toml"), reference)
    no_fidelity = text.split("[variant.fidelity]")[0]
    (tmp_path / f"{VARIANT}.toml").write_text(no_fidelity)
    with pytest.raises(ModelError, match=r"needs \[variant.fidelity\]"):
        load_card(tmp_path / f"{VARIANT}.toml")


def test_the_embedder_runs_through_the_delegate_and_the_others_on_the_cpu(models_dir: Path, standin: Path) -> None:
    lib = ctypes.CDLL(str(standin))  # the same library the runtime loaded: its counters
    before = lib.edgeface_standin_prepared()
    engine = _engine(models_dir, standin)
    assert engine.backends() == {"detector": "cpu", "landmarks": "cpu", "embedder": "edgetpu"}
    assert engine.embedder_card.id == VARIANT and engine.embedder.max_batch == 1
    # the interpreter handed the delegate exactly one graph, the embedder's: 71 nodes, 34 of them CONV_2D
    assert lib.edgeface_standin_prepared() == before + 1
    ops = list_ops(engine.embedder_card.read_model())
    assert lib.edgeface_standin_nodes() == len(ops.nodes) == 71
    assert lib.edgeface_standin_op_count(CONV_2D) == ops.counts()["CONV_2D"] == 34
    assert lib.edgeface_standin_custom_nodes() == 0


def test_variant_embeddings_match_the_reference(models_dir: Path, standin: Path, chips: np.ndarray) -> None:
    variant = _engine(models_dir, standin).embed(chips[:5])
    reference = Engine(dataclasses.replace(Config(), runtime=RuntimeConfig(num_threads=1))).embed(chips[:5])
    card = find_card(VARIANT, models_dir)
    assert card.variant and card.variant.fidelity
    assert np.min(np.sum(variant * reference, axis=1)) >= card.variant.fidelity.min_cosine


def test_a_failed_delegate_runs_the_reference_on_the_cpu(
    models_dir: Path, standin: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """libedgetpu loads but creates no delegate when no Edge TPU is attached; the stand-in does the same
    with option fail. A compiled file cannot run without its delegate, so the reference runs instead."""
    caplog.set_level(logging.WARNING, logger="edgeface")
    engine = _engine(models_dir, standin, delegate_options={"fail": "no Edge TPU attached"})
    placement = engine.placements()["embedder"]
    assert placement.backend == "cpu" and placement.wanted == "edgetpu" and placement.card.id == REFERENCE
    assert "no Edge TPU attached" in placement.reason
    assert engine.embedder_card.id == REFERENCE  # the card that runs; the same space, so the same galleries
    (record,) = [r for r in caplog.records if r.getMessage() == "model.backend_fallback"]
    fields = record.edgeface_fields  # type: ignore[attr-defined]
    assert fields["model"] == VARIANT and fields["runs"] == REFERENCE and fields["backend"] == "edgetpu"


def test_a_compiled_variant_cannot_be_put_on_another_backend(models_dir: Path, standin: Path) -> None:
    with pytest.raises(ConfigError, match="compiled for 'edgetpu'"):
        _ = _engine(models_dir, standin, embedder_backend="cpu").embedder


# -- the embedding-space rule: galleries follow the space, not the file ------------------------------


def _publish(root: Path, vectors: np.ndarray, signer: Ed25519PrivateKey, **how: object) -> Path:
    names = [f"person{i}" for i in range(len(vectors))]
    entries = [
        {
            "identity": n,
            "image": f"{i:064x}",
            "source": "test",
            "consent": "test",
            "enrolled_by": "pytest",
            "enrolled_at": "2025-01-01T00:00:00Z",
        }
        for i, n in enumerate(names)
    ]
    identities = [{"id": n, "name": n} for n in names]
    common = {"vectors": vectors, "entries": entries, "identities": identities, "signer": signer, "normalise": False}
    if "card" in how:
        return publish_for(root, how["card"], target_fpir=0.01, **common).dir  # type: ignore[arg-type]
    return publish(root, embedder=how["ref"], thresholds={"cosine": 0.3}, **common).dir  # type: ignore[arg-type]


def test_a_gallery_of_the_reference_serves_the_variant_and_another_space_is_refused(
    models_dir: Path, standin: Path, chips: np.ndarray, tmp_path: Path
) -> None:
    signer = Ed25519PrivateKey.generate()
    trusted = [signer.public_key()]
    reference_engine = Engine(dataclasses.replace(Config(), runtime=RuntimeConfig(num_threads=1)))
    variant_engine = _engine(models_dir, standin)
    unit = unit_embedder(find_card(VARIANT, models_dir))
    enrolled = reference_engine.embed(chips[::3])  # one chip of each photo's set, embedded at the centre

    bundle = _publish(tmp_path / "ref", enrolled, signer, card=find_card(REFERENCE))
    verify_bundle(bundle, trusted, embedder=unit)
    gallery = Gallery.open(bundle, trusted, embedder=unit)
    rows, _ = gallery.search(variant_engine.embed(chips[3]), 1)  # the unit embeds with the variant
    assert gallery.entry(int(rows[0]))["identity"] == "person1"

    other = find_card("mobilefacenet-v1-float32")  # another space: calibrated apart, its own galleries
    bundle = _publish(tmp_path / "f32", enrolled, signer, card=other)
    with pytest.raises(BundleRejected, match="space 'mobilefacenet-v1-float32'") as refused:
        verify_bundle(bundle, trusted, embedder=unit)
    assert refused.value.reason == "embedder_mismatch"


@pytest.mark.parametrize(
    ("ref", "accepted"),
    [
        (EmbedderRef("old-manifest", "REF", 128), True),  # written before spaces: the reference file itself
        (EmbedderRef("old-manifest", "ab" * 32, 128), False),  # before spaces, another file
        (EmbedderRef("another-variant", "cd" * 32, 128, space=REFERENCE), True),  # a third file of the space
        (EmbedderRef("another-variant", "cd" * 32, 512, space=REFERENCE), False),  # same name, other size
        (EmbedderRef("mobilefacenet-v1-float32", "ef" * 32, 128, space="mobilefacenet-v1-float32"), False),
    ],
)
def test_which_manifests_a_variant_unit_accepts(
    models_dir: Path, tmp_path: Path, ref: EmbedderRef, accepted: bool
) -> None:
    reference = find_card(REFERENCE, models_dir)
    if ref.sha256 == "REF":
        ref = dataclasses.replace(ref, sha256=reference.sha256)
    signer = Ed25519PrivateKey.generate()
    vectors = np.eye(4, ref.dim, dtype=np.float32)
    bundle = _publish(tmp_path / "b", vectors, signer, ref=ref)
    unit = unit_embedder(find_card(VARIANT, models_dir))
    if accepted:
        verify_bundle(bundle, [signer.public_key()], embedder=unit)
    else:
        with pytest.raises(BundleRejected, match="not comparable"):
            verify_bundle(bundle, [signer.public_key()], embedder=unit)


def test_the_int8_embedder_maps_onto_the_edge_tpu_once_its_batch_is_fixed() -> None:
    """The op check: every operator of the int8 MobileFaceNet is on the Edge TPU compiler's list; the file
    as shipped has a dynamic batch, which the delegate refuses; fixed at 1 the whole graph maps."""
    shipped = find_card(REFERENCE).read_model()
    report = check(shipped)
    assert report.total == 71 and report.supported == 71 and report.mapped == 0
    assert any("dynamic batch" in p for p in report.model_problems)
    fixed = check(with_static_batch(shipped))
    assert fixed.model_problems == () and fixed.mapped == fixed.total == 71 and fixed.cpu == []


def test_float_models_stay_on_the_cpu() -> None:
    report = check(find_card("blazeface-short-range").read_model())
    assert report.mapped == 0 and any("FLOAT32" in p for p in report.model_problems)
    assert report.cpu[0].node.op == "DEQUANTIZE" and "not in the Edge TPU's operation list" in report.cpu[0].why
