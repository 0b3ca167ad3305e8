"""Bundles on disk: what verification accepts and what it refuses, each for its own reason."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gallery_helpers import EMBEDDER, OTHER_EMBEDDER, THRESHOLDS, Content

from edgeface.errors import BundleRejected, GalleryKeyError
from edgeface.gallery import signing
from edgeface.gallery.bundle import verify_bundle, write_bundle
from edgeface.gallery.match import Gallery


def _bundle(
    tmp_path: Path,
    content: Content,
    signer: Ed25519PrivateKey | None,
    version: int = 3,
    embedder=EMBEDDER,
    name: str = "b",
) -> Path:  # type: ignore[no-untyped-def]
    out = tmp_path / name
    write_bundle(
        out,
        vectors=content.vectors,
        entries=content.entries,
        identities=content.identities,
        version=version,
        embedder=embedder,
        thresholds=THRESHOLDS,
        signer=signer,
    )
    return out


def test_valid_bundle_verifies_and_answers(tmp_path, content, signer):
    d = _bundle(tmp_path, content, signer)
    vb = verify_bundle(d, [signer.public_key()], embedder_sha256=EMBEDDER.sha256, newer_than=2)
    assert vb.manifest.count == len(content.vectors) and vb.manifest.gallery_version == 3
    g = Gallery.open(d, [signer.public_key()])
    row = 17
    decision = g.identify(content.vectors[row])
    assert decision.match is not None and decision.match.identity == content.entries[row]["identity"]
    assert g.entry(decision.match.row)["source"] == "synthetic"  # provenance travels with each row
    g.close()


@pytest.mark.parametrize("victim", ["vectors.npy", "entries.ndjson", "identities.ndjson", "labels.npy", "index.ann"])
def test_tampered_file_is_refused(tmp_path, content, signer, victim):
    d = _bundle(tmp_path, content, signer)
    with open(d / victim, "r+b") as f:
        f.seek(os.path.getsize(d / victim) // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x01]))
    with pytest.raises(BundleRejected) as e:
        verify_bundle(d, [signer.public_key()])
    assert e.value.reason == "hash_mismatch"
    with pytest.raises(BundleRejected):
        Gallery.open(d, [signer.public_key()])


def test_missing_file_is_refused(tmp_path, content, signer):
    d = _bundle(tmp_path, content, signer)
    (d / "labels.npy").unlink()
    with pytest.raises(BundleRejected) as e:
        verify_bundle(d, [signer.public_key()])
    assert e.value.reason == "missing_file"


def test_wrong_signature_is_refused(tmp_path, content, signer):
    d = _bundle(tmp_path, content, Ed25519PrivateKey.generate())
    with pytest.raises(BundleRejected) as e:
        verify_bundle(d, [signer.public_key()])
    assert e.value.reason == "bad_signature"


def test_edited_manifest_breaks_the_signature(tmp_path, content, signer):
    d = _bundle(tmp_path, content, signer)
    m = json.loads((d / "manifest.json").read_text())
    m["gallery_version"] = 99  # e.g. to pass a rollback check
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleRejected) as e:
        verify_bundle(d, [signer.public_key()])
    assert e.value.reason == "bad_signature"


def test_unsigned_bundle_is_refused(tmp_path, content, signer):
    d = _bundle(tmp_path, content, None)
    assert not (d / "manifest.sig").exists()
    with pytest.raises(BundleRejected) as e:
        verify_bundle(d, [signer.public_key()])
    assert e.value.reason == "unsigned"


def test_older_or_same_version_is_refused(tmp_path, content, signer):
    d = _bundle(tmp_path, content, signer, version=3)
    for installed in (3, 4):
        with pytest.raises(BundleRejected) as e:
            verify_bundle(d, [signer.public_key()], newer_than=installed)
        assert e.value.reason == "rollback"


def test_other_embedder_is_refused(tmp_path, content, signer):
    d = _bundle(tmp_path, content, signer, embedder=OTHER_EMBEDDER)
    with pytest.raises(BundleRejected) as e:
        verify_bundle(d, [signer.public_key()], embedder_sha256=EMBEDDER.sha256)
    assert e.value.reason == "embedder_mismatch"


def test_key_rotation_accepts_any_trusted_key(tmp_path, content, signer):
    new = Ed25519PrivateKey.generate()
    d = _bundle(tmp_path, content, new)
    assert verify_bundle(d, [signer.public_key(), new.public_key()]).key_id == signing.key_id(new.public_key())


def test_index_build_is_reproducible(tmp_path, content, signer):
    a = _bundle(tmp_path, content, signer, name="a")
    b = _bundle(tmp_path, content, signer, name="b")
    assert (a / "index.ann").read_bytes() == (b / "index.ann").read_bytes()
    assert (a / "vectors.npy").read_bytes() == (b / "vectors.npy").read_bytes()
    np.testing.assert_array_equal(np.load(a / "vectors.npy"), content.vectors)


def test_key_files(tmp_path):
    kid = signing.generate_keypair(tmp_path / "k.pem", tmp_path / "k.pub")
    assert (tmp_path / "k.pem").stat().st_mode & 0o077 == 0
    assert signing.key_id(signing.load_public_key(tmp_path / "k.pub")) == kid
    signing.load_private_key(tmp_path / "k.pem")
    with pytest.raises(GalleryKeyError, match="already exists"):
        signing.generate_keypair(tmp_path / "k.pem", tmp_path / "k2.pub")
    os.chmod(tmp_path / "k.pem", 0o644)
    with pytest.raises(GalleryKeyError, match="chmod 600"):
        signing.load_private_key(tmp_path / "k.pem")
