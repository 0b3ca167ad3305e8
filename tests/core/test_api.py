"""The library surface as a user writes it: `import edgeface` and its verbs, from an image to an identity.

Runs on the repo's public-domain test photos (tests/images) and the bundled sample gallery
(edgeface/_sample: Barack Obama and Joe Biden, signed with the demo key), as `edgeface run`'s demo does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import edgeface
from edgeface.daemon import demo
from edgeface.errors import BundleRejected, GalleryError

SAMPLE_GALLERY = demo.GALLERY
DEMO_KEY = demo.DEMO_KEY


@pytest.fixture(scope="module")
def sample_gallery() -> Any:
    g = edgeface.open_gallery(SAMPLE_GALLERY, trusted_keys=[DEMO_KEY])
    yield g
    g.close()


def test_the_chain_verb_by_verb(images_dir: Path) -> None:
    image = edgeface.load_image(images_dir / "obama2.jpg")
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3

    faces = edgeface.detect_faces(image)
    assert len(faces) == 1 and isinstance(faces[0], edgeface.Face)
    face = faces[0]
    assert face.keypoints.shape == (6, 2) and face.score > 0.5

    quality = edgeface.assess_quality(image, face)
    assert isinstance(quality, edgeface.Quality) and quality.passed, quality.reasons

    chip = edgeface.align(image, face)
    size = edgeface.default_engine().alignment
    assert chip.shape == (size.height, size.width, 3) and chip.dtype == np.uint8

    vector = edgeface.embed(chip)
    assert vector.shape == (128,) and vector.dtype == np.float32
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    # the image and its face give the same embedding as the chip; a list of faces gives one row each
    assert np.array_equal(edgeface.embed(image, face), vector)
    batch = edgeface.embed(image, faces)
    assert batch.shape == (1, 128) and np.allclose(batch[0], vector, atol=1e-6)
    assert edgeface.embed(np.stack([chip, chip])).shape == (2, 128)
    assert edgeface.embed(image, []).shape == (0, 128)


def test_embed_fuses_the_mirrored_chip_as_the_engine_does(images_dir: Path) -> None:
    """edgeface.embed follows the card's flip-fusion choice (MobileFaceNet's card: off; dlib's: on)."""
    image = edgeface.load_image(images_dir / "obama.jpg")
    chip = edgeface.align(image, edgeface.detect_faces(image)[0])
    engine = edgeface.default_engine()
    assert engine.flip_fusion is engine.embedder_card.embedder.flip_fusion  # type: ignore[union-attr]
    fused = engine.embedder.embed(chip, flip_fusion=True)
    plain = engine.embedder.embed(chip, flip_fusion=False)
    assert not np.allclose(fused, plain, atol=1e-4)
    assert np.array_equal(edgeface.embed(chip), fused if engine.flip_fusion else plain)


def test_embeddings_tell_people_apart(images_dir: Path) -> None:
    def vec(name: str) -> np.ndarray:
        image = edgeface.load_image(images_dir / name)
        return edgeface.embed(image, edgeface.detect_faces(image)[0])

    obama, obama2, biden = vec("obama.jpg"), vec("obama2.jpg"), vec("biden.jpg")
    assert float(obama @ obama2) > float(obama @ biden) + 0.1


def test_embed_wants_a_chip_without_a_face(images_dir: Path) -> None:
    image = edgeface.load_image(images_dir / "obama.jpg")
    with pytest.raises(ValueError, match="from align"):
        edgeface.embed(image)


def test_identify_the_demo_photos_against_the_sample_bundle(sample_gallery: Any) -> None:
    """The demo's four decisions: two matches, one stranger (no match), one blurred face (refused)."""
    got = {}
    for photo in sorted(demo.PHOTOS.iterdir()):
        found = edgeface.identify(edgeface.load_image(photo), gallery=sample_gallery)
        assert len(found) == 1 and isinstance(found[0], edgeface.Identification)
        got[photo.name] = found[0]

    for name in ("01-obama-address-to-congress.jpg", "02-obama-white-house.jpg"):
        who = got[name]
        assert who.quality.passed and who.embedding is not None and who.embedding.shape == (128,)
        assert who.match is not None and who.match.identity == "barack-obama" and who.match.name == "Barack Obama"
        assert who.match.score >= who.decision.threshold and who.candidates[0] is who.match
        assert [c.identity for c in who.candidates] == ["barack-obama", "joe-biden"]  # every identity, best first

    stranger = got["03-eileen-collins-nasa.jpg"]
    assert stranger.match is None and stranger.candidates[0].identity == "joe-biden"
    assert stranger.candidates[0].score < stranger.decision.threshold

    blurred = got["04-blurred-obama.jpg"]
    assert not blurred.quality.passed and any(r.startswith("sharpness") for r in blurred.quality.reasons)
    assert blurred.embedding is None and blurred.decision is None and blurred.match is None
    assert blurred.candidates == []
    assert blurred.to_dict()["decision"] is None and got[name].to_dict()["decision"]["match"]["identity"]
    assert [got[n].verdict for n in sorted(got)] == ["match", "match", "no_match", "refused"]  # the results' words


def test_identify_takes_a_bundle_folder_and_the_gallery_settings(images_dir: Path, sample_gallery: Any) -> None:
    image = edgeface.load_image(images_dir / "biden.jpg")  # the photo Joe Biden was enrolled from
    by_folder = edgeface.identify(image, gallery=SAMPLE_GALLERY, trusted_keys=[DEMO_KEY])
    assert by_folder[0].match is not None and by_folder[0].match.identity == "joe-biden"
    assert by_folder[0].match.score > 0.99
    opened = edgeface.identify(image, gallery=sample_gallery)
    assert opened[0].decision == by_folder[0].decision  # same gallery, same answer

    top1 = edgeface.identify(image, gallery=sample_gallery, top_k=1)
    assert len(top1[0].candidates) == 1
    other_photo = edgeface.load_image(images_dir / "obama2.jpg")  # not the enrolled one: similarity < 0.99
    strict = edgeface.identify(other_photo, gallery=sample_gallery, threshold=0.99)
    assert strict[0].match is None and strict[0].decision.threshold == 0.99
    assert strict[0].candidates[0].identity == "barack-obama"
    assert len(sample_gallery) == 2  # identify leaves a gallery it was given open


def test_identify_an_image_without_faces(sample_gallery: Any) -> None:
    assert edgeface.identify(np.full((240, 320, 3), 128, np.uint8), gallery=sample_gallery) == []


def test_a_bundle_signed_by_another_key_is_refused(tmp_path: Path, images_dir: Path) -> None:
    other = tmp_path / "other.pub"
    other.write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    image = edgeface.load_image(images_dir / "obama.jpg")
    with pytest.raises(BundleRejected):
        edgeface.identify(image, gallery=SAMPLE_GALLERY, trusted_keys=[other])


def test_identify_gives_the_daemons_decisions_on_the_installed_gallery(tmp_path: Path) -> None:
    """`gallery=None` is the unit's installed gallery; the verbs and `edgeface run` reach the same decisions."""
    from edgeface.daemon import Daemon

    config = demo.demo_config(directory=tmp_path / "demo")
    engine = edgeface.Engine(config)
    with pytest.raises(GalleryError, match="no gallery is installed"):
        edgeface.identify(edgeface.load_image(demo.PHOTOS / "01-obama-address-to-congress.jpg"), engine=engine)
    demo.install_sample_gallery(config)

    seen: list[dict[str, Any]] = []
    assert Daemon(config, install_signals=False, on_result=seen.append).run() == 0
    daemon = {r["source"]: r for r in seen}
    assert sorted(r["decision"] for r in seen) == ["match", "match", "no_match", "refused"]

    for photo in sorted(demo.PHOTOS.iterdir()):
        (who,) = edgeface.identify(edgeface.load_image(photo), engine=engine)
        r = daemon[photo.name]
        if r["decision"] == "refused":
            assert who.decision is None and who.quality.reasons == r["reasons"]
            continue
        assert ("match" if who.match else "no_match") == r["decision"]
        assert who.candidates[0].identity == r["identity"]
        assert who.candidates[0].score == pytest.approx(r["score"], abs=2e-6)


def test_identify_on_a_bundle_folder_takes_the_normalised_threshold_setting(tmp_path: Path, images_dir: Path) -> None:
    """`gallery.normalised_threshold` decides a normalised bundle opened from a folder, as it does the
    daemon's installed gallery (GalleryStore.from_config): the same probe, a match by the bundle's own
    threshold, is no match once the setting asks for more than its normalised score."""
    from edgeface.config import load_config
    from edgeface.gallery.publish import publish_for

    engine = edgeface.default_engine()
    card = engine.embedder_card
    image = edgeface.load_image(images_dir / "obama.jpg")
    obama = edgeface.embed(image, edgeface.detect_faces(image)[0])
    rng = np.random.default_rng(13)  # 60 people nobody will be mistaken for: enough for a cohort
    others = rng.standard_normal((60, obama.shape[0])).astype(np.float32)
    vectors = np.vstack([obama[None], others / np.linalg.norm(others, axis=1, keepdims=True)])
    names = ["obama"] + [f"p{i:02d}" for i in range(60)]
    signer = Ed25519PrivateKey.generate()
    key = tmp_path / "signing.pub"
    key.write_bytes(
        signer.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
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
    bundle = publish_for(
        tmp_path / "pub",
        card,
        vectors=vectors,
        entries=entries,
        identities=[{"id": n, "name": n} for n in names],
        signer=signer,
        target_fpir=0.01,
    ).dir
    probe = edgeface.load_image(images_dir / "obama2.jpg")
    (own,) = edgeface.identify(probe, gallery=bundle, trusted_keys=[key], engine=engine)
    assert own.decision is not None and own.decision.space == "normalised"
    assert own.match is not None and own.match.identity == "obama"
    top = own.match.normalised
    assert top is not None and top >= own.decision.threshold

    strict = edgeface.Engine(load_config(None, env={}, overrides=[f"gallery.normalised_threshold={top + 1:.4f}"]))
    (who,) = edgeface.identify(probe, gallery=bundle, trusted_keys=[key], engine=strict)
    assert who.decision is not None and who.decision.space == "normalised"
    assert who.decision.threshold == pytest.approx(top + 1, abs=1e-4)
    assert who.match is None and who.candidates[0].identity == "obama"
    assert who.candidates[0].normalised == pytest.approx(top, abs=1e-5)  # the same score, a stricter threshold
