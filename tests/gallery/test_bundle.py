"""Bundles on disk: what verification accepts and what it refuses, each for its own reason."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gallery_helpers import EMBEDDER, OTHER_EMBEDDER, THRESHOLDS, Content

from edgeface.errors import BundleRejected, GalleryKeyError
from edgeface.gallery import signing
from edgeface.gallery.bundle import (
    DATA_FILES,
    PlainDir,
    canonical_line,
    check_acceptable,
    entry_key,
    labels_for,
    npy_chunks,
    read_signed_manifest,
    verify_bundle,
    write_bundle,
    write_contents,
)
from edgeface.gallery.cohort import Normaliser
from edgeface.gallery.index import ANNOY_METRIC, DEFAULT_SEED, trees_for
from edgeface.gallery.manifest import EmbedderRef, FileEntry, UnitEmbedder
from edgeface.gallery.match import Gallery

OTHER_DIM = EmbedderRef("wide-embedder", "ef" * 32, 256)
SPACED = EmbedderRef("spaced-embedder", "12" * 32, 128, space="space-a")


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
    with pytest.raises(BundleRejected) as e:  # the unit refuses it too, the exactly searched index included
        Gallery.open(d, [signer.public_key()])
    assert e.value.reason == "hash_mismatch"
    assert f"{d}/{victim}" in str(e.value) and "the signed manifest" in str(e.value)


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
    assert str(e.value).startswith(f"{d}/manifest.json: the signature (key ")  # which file, which key
    with pytest.raises(BundleRejected) as e:  # the unit's own open says the same
        Gallery.open(d, [signer.public_key()])
    assert e.value.reason == "bad_signature"
    assert str(e.value).startswith(f"{d}/manifest.json: the signature (key ")


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
    assert str(e.value) == f"{d}/manifest.json has no signature file; refusing an unsigned gallery"


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
    with pytest.raises(BundleRejected) as e:
        Gallery.open(d, [signer.public_key()], embedder_sha256=EMBEDDER.sha256)
    assert e.value.reason == "embedder_mismatch"
    assert str(e.value).startswith(f"{d} was built with embedder other-embedder")  # which folder, which model


def test_key_rotation_accepts_any_trusted_key(tmp_path, content, signer):
    new = Ed25519PrivateKey.generate()
    d = _bundle(tmp_path, content, new)
    assert verify_bundle(d, [signer.public_key(), new.public_key()]).key_id == signing.key_id(new.public_key())
    g = Gallery.open(d, [signer.public_key(), new.public_key()])
    try:  # the key that signed it, as `edgeface doctor` reports it
        assert g.key_id == signing.key_id(new.public_key()) != signing.key_id(signer.public_key())
    finally:
        g.close()


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


# -- the bundle's byte form and the writer's refusals (what a build promises its readers) ------------------


def test_canonical_line_is_one_stable_utf8_line():
    a = canonical_line({"name": "José Ñúñez", "id": "x1", "n": [1, 2]})
    b = canonical_line({"n": [1, 2], "id": "x1", "name": "José Ñúñez"})
    assert a == b == '{"id":"x1","n":[1,2],"name":"José Ñúñez"}\n'.encode()  # sorted, no spaces, UTF-8 kept


def test_entry_key_is_identity_and_image_as_text():
    assert entry_key({"identity": 7, "image": "ab12", "source": "x"}) == ("7", "ab12")


def test_labels_are_positions_in_the_identities_list():
    labels = labels_for([{"identity": "b"}, {"identity": "a"}, {"identity": "b"}], ["a", "b"])
    assert labels.dtype == np.int32 and labels.tolist() == [1, 0, 1]
    with pytest.raises(ValueError, match="^entry refers to identity 'c' that is not in the identities list$") as e:
        labels_for([{"identity": "c"}], ["a"])
    assert e.value.__suppress_context__  # the message says it all: no KeyError traceback above it


def test_npy_chunks_are_np_save_bytes_in_bounded_chunks(tmp_path):
    a = np.arange(16385 * 2, dtype=np.float32).reshape(16385, 2)
    np.save(tmp_path / "a.npy", a)
    chunks = list(npy_chunks(a))
    assert b"".join(chunks) == (tmp_path / "a.npy").read_bytes()
    assert len(chunks) == 3  # the header, then 16384 rows at most per chunk: a memory map is never copied whole
    assert b"".join(npy_chunks(a, rows_per_chunk=5)) == (tmp_path / "a.npy").read_bytes()


def test_plain_dir_creates_its_folder_and_reports_what_it_wrote(tmp_path):
    sink = PlainDir(tmp_path / "new" / "nested")
    entry = sink.write("f.bin", [b"abc", b"", b"defg"])
    assert (tmp_path / "new" / "nested" / "f.bin").read_bytes() == b"abcdefg"
    assert entry == FileEntry(hashlib.sha256(b"abcdefg").hexdigest(), 7)
    built = sink.build("g.bin", lambda p: p.write_bytes(b"xyz"))
    assert built == FileEntry(hashlib.sha256(b"xyz").hexdigest(), 3)
    assert PlainDir(tmp_path / "new" / "nested").dir == tmp_path / "new" / "nested"  # an existing folder is fine


def test_write_contents_refuses_inconsistent_content(tmp_path, content):
    lines = [canonical_line(e) for e in content.entries]
    ids = [canonical_line(i) for i in content.identities]
    sink = PlainDir(tmp_path / "c")
    with pytest.raises(ValueError, match="^vectors must be float32 "):
        write_contents(sink, content.vectors.astype(np.float64), lines, ids, 2, 1)
    with pytest.raises(ValueError, match="vectors must be float32"):
        write_contents(sink, content.vectors[0], lines[:1], ids, 2, 1)
    with pytest.raises(ValueError, match=f"^{len(lines) - 1} entries for {len(lines)} vectors$"):
        write_contents(sink, content.vectors, lines[:-1], ids, 2, 1)
    with pytest.raises(ValueError, match="^identity ids must be unique$"):
        write_contents(sink, content.vectors, lines, ids + ids[:1], 2, 1)
    assert not list((tmp_path / "c").iterdir())  # refused before anything was written


def test_write_bundle_records_how_it_was_built(tmp_path, content, signer):
    out = tmp_path / "b"
    (tmp_path / "b.partial").mkdir()
    (tmp_path / "b.partial" / "junk").write_bytes(b"left by a crashed build")
    m = write_bundle(
        out,
        vectors=content.vectors.astype(np.float64),  # converted, not refused
        entries=content.entries,
        identities=content.identities,
        version=4,
        embedder=EMBEDDER,
        thresholds=THRESHOLDS,
        signer=signer,
    )
    assert not (tmp_path / "b.partial").exists() and not (out / "junk").exists()
    assert sorted(p.name for p in out.iterdir()) == sorted([*DATA_FILES, "manifest.json", "manifest.sig"])
    assert (m.count, m.identities, m.gallery_version, m.thresholds) == (
        len(content.vectors),
        len(content.identities),
        4,
        THRESHOLDS,
    )
    dims = np.load(out / "projection.npy").shape[0] - 1
    assert 0 < dims < EMBEDDER.dim
    trees = trees_for(len(content.vectors))
    want = {"kind": "annoy", "metric": ANNOY_METRIC, "space": "pca", "dims": dims, "trees": trees, "seed": DEFAULT_SEED}
    assert m.index == want and json.loads((out / "manifest.json").read_bytes())["index"] == want
    for name in DATA_FILES:
        assert m.files[name] == FileEntry(
            hashlib.sha256((out / name).read_bytes()).hexdigest(), (out / name).stat().st_size
        )
    assert np.load(out / "labels.npy").dtype == np.int32
    assert [json.loads(x) for x in (out / "entries.ndjson").read_bytes().splitlines()] == content.entries
    assert [json.loads(x) for x in (out / "identities.ndjson").read_bytes().splitlines()] == content.identities
    assert signing.verify(
        (out / "manifest.json").read_bytes(), (out / "manifest.sig").read_bytes(), [signer.public_key()]
    )
    with pytest.raises(FileExistsError, match="already exists; bundles are immutable, build a new version$"):
        _bundle(tmp_path, content, signer, name="b")
    # explicit trees and seed are used and recorded
    m2 = write_bundle(
        tmp_path / "c",
        vectors=content.vectors,
        entries=content.entries,
        identities=content.identities,
        version=5,
        embedder=EMBEDDER,
        thresholds=THRESHOLDS,
        signer=signer,
        trees=3,
        seed=7,
    )
    assert (m2.index["trees"], m2.index["seed"]) == (3, 7)
    assert (tmp_path / "c" / "index.ann").read_bytes() != (out / "index.ann").read_bytes()


def test_write_bundle_refuses_vectors_of_another_size(tmp_path, content, signer):
    with pytest.raises(ValueError, match=f"^vectors are .* the embedder {OTHER_DIM.id} makes {OTHER_DIM.dim}-d$"):
        _bundle(tmp_path, content, signer, embedder=OTHER_DIM)
    with pytest.raises(ValueError, match="the embedder"):
        write_bundle(
            tmp_path / "flat",
            vectors=content.vectors[0],
            entries=content.entries[:1],
            identities=content.identities,
            version=1,
            embedder=EMBEDDER,
            thresholds=THRESHOLDS,
            signer=signer,
        )
    assert not (tmp_path / "b").exists() and not (tmp_path / "flat").exists()


# -- refusals say what went wrong, where --------------------------------------------------------------


def test_a_file_of_the_wrong_size_is_refused_naming_it(tmp_path, content, signer):
    d = _bundle(tmp_path, content, signer)
    want = json.loads((d / "manifest.json").read_text())["files"]["labels.npy"]["size"]
    with open(d / "labels.npy", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleRejected) as e:
        verify_bundle(d, [signer.public_key()])
    assert e.value.reason == "size_mismatch"
    assert str(e.value) == f"{d / 'labels.npy'} is {want + 1} bytes, the manifest says {want}"


def test_refusal_messages_name_the_file_and_the_cause(tmp_path, content, signer):
    d = _bundle(tmp_path, content, signer)
    want = json.loads((d / "manifest.json").read_text())["files"]["entries.ndjson"]["sha256"]
    original = (d / "entries.ndjson").read_bytes()
    (d / "entries.ndjson").write_bytes(original.replace(b"synthetic", b"synthetiK", 1))
    got = hashlib.sha256((d / "entries.ndjson").read_bytes()).hexdigest()
    with pytest.raises(BundleRejected) as e:
        verify_bundle(d, [signer.public_key()])
    msg = str(e.value)
    assert e.value.reason == "hash_mismatch" and str(d / "entries.ndjson") in msg
    assert f"SHA-256 {got[:16]}..., the signed manifest says {want[:16]}...; the file was altered" in msg
    (d / "entries.ndjson").write_bytes(original)
    (d / "labels.npy").unlink()
    with pytest.raises(BundleRejected, match="labels.npy is missing; the bundle is incomplete$") as e:
        verify_bundle(d, [signer.public_key()])
    assert e.value.reason == "missing_file"
    (d / "manifest.json").unlink()
    with pytest.raises(BundleRejected, match="no readable manifest.json") as e:
        verify_bundle(d, [signer.public_key()])
    assert e.value.reason == "missing_file" and str(e.value).startswith(f"{d}: no readable manifest.json (")


def test_policy_refusals_say_why(tmp_path, content, signer):
    d = _bundle(tmp_path, content, signer, embedder=OTHER_EMBEDDER)
    with pytest.raises(BundleRejected) as e:
        verify_bundle(d, [signer.public_key()], embedder_sha256=EMBEDDER.sha256)
    msg = str(e.value)
    assert msg.startswith(f"{d} was built with embedder other-embedder ({OTHER_EMBEDDER.sha256[:12]}), ")
    assert f"this unit runs {UnitEmbedder(EMBEDDER.sha256).describe()}" in msg
    assert msg.endswith(
        "; its vectors are not comparable. Publish a gallery built with a model in this unit's embedding space, or update the unit's model first"
    )
    # a unit's embedder given as such (its space), not only as a file hash
    unit = UnitEmbedder(EMBEDDER.sha256, space="space-a", dim=128)
    with pytest.raises(BundleRejected, match="embedder other-embedder") as e:
        verify_bundle(d, [signer.public_key()], embedder=unit)
    assert e.value.reason == "embedder_mismatch"
    spaced = _bundle(tmp_path, content, signer, embedder=SPACED, name="spaced")
    assert verify_bundle(spaced, [signer.public_key()], embedder=unit).dir == spaced  # same space: accepted
    with pytest.raises(BundleRejected, match=rf"\({SPACED.sha256[:12]}, space 'space-a'\)"):
        verify_bundle(spaced, [signer.public_key()], embedder_sha256=EMBEDDER.sha256)
    m = verify_bundle(d, [signer.public_key()]).manifest
    with pytest.raises(BundleRejected) as e:
        check_acceptable(m, newer_than=4)
    assert e.value.reason == "rollback"
    assert str(e.value).startswith("bundle is gallery version 3, not newer than the installed 4; refusing to go back")
    check_acceptable(m, newer_than=2, embedder_sha256=OTHER_EMBEDDER.sha256)  # newer, same model: fine
    with pytest.raises(BundleRejected, match="^bundle was built with embedder other-embedder"):
        check_acceptable(m, embedder_sha256=EMBEDDER.sha256)


def test_a_signed_manifest_must_list_every_data_file(tmp_path, content, signer):
    d = _bundle(tmp_path, content, signer)
    doc = json.loads((d / "manifest.json").read_bytes())
    del doc["files"]["labels.npy"], doc["files"]["index.ann"]
    data = json.dumps(doc).encode()
    with pytest.raises(BundleRejected) as e:
        read_signed_manifest(data, signing.sign(data, signer), [signer.public_key()])
    assert e.value.reason == "format"
    assert str(e.value) == "bundle/manifest.json does not list labels.npy, index.ann"
    (d / "manifest.json").write_bytes(data)
    (d / "manifest.sig").write_bytes(signing.sign(data, signer))
    with pytest.raises(BundleRejected, match=f"^{d}/manifest.json does not list labels.npy, index.ann$"):
        verify_bundle(d, [signer.public_key()])
    with pytest.raises(BundleRejected, match=f"^{d}/manifest.json does not list labels.npy, index.ann$"):
        Gallery.open(d, [signer.public_key()])  # the unit's open names the folder too
    ok = tmp_path / "b2"
    _bundle(tmp_path, content, signer, name="b2")
    good = (ok / "manifest.json").read_bytes()
    assert read_signed_manifest(good, (ok / "manifest.sig").read_bytes(), [signer.public_key()]).gallery_version == 3
    with pytest.raises(BundleRejected, match="^bundle/manifest.json"):
        read_signed_manifest(good, None, [signer.public_key()])


def test_a_bundle_with_score_normalisation_carries_its_files_and_section(tmp_path, content, signer):
    n_ids = len(content.identities)
    rng = np.random.default_rng(3)
    cohort = rng.normal(size=(5, EMBEDDER.dim))  # float64: written as float32 all the same
    labels = np.array([0, -1, 1, -1, 2])  # three gallery identities (rebuilt from the vectors) and two extra people
    norm = Normaliser(rng.normal(size=(n_ids, 2)), cohort, labels, 2)
    m = write_bundle(
        tmp_path / "n",
        vectors=content.vectors,
        entries=content.entries,
        identities=content.identities,
        version=1,
        embedder=EMBEDDER,
        thresholds={**THRESHOLDS, "normalised": 2.5},
        signer=signer,
        normaliser=norm,
        normalisation={"cohort_source": "gallery+extra"},
    )
    assert m.normalisation == {
        "method": "s-norm",
        "templates": "mean",
        "top_k": 2,
        "cohort": 5,
        "files": ["norm_stats.npy", "cohort.npy", "cohort_labels.npy"],
        "cohort_source": "gallery+extra",
    }
    d = verify_bundle(tmp_path / "n", [signer.public_key()]).dir  # every file listed and hashed
    stats, extra, cl = (np.load(d / f) for f in ("norm_stats.npy", "cohort.npy", "cohort_labels.npy"))
    assert stats.dtype == np.float32 and np.array_equal(stats, norm.stats.astype(np.float32))
    assert extra.dtype == np.float32 and np.array_equal(
        extra, cohort[[1, 3]].astype(np.float32)
    )  # only the extra people's
    assert cl.dtype == np.int32 and cl.tolist() == labels.tolist()
    assert {"norm_stats.npy", "cohort.npy", "cohort_labels.npy"} <= set(m.files)
