"""Normalised open-set scores: carried in the signed bundle, applied on open/identify (plain and encrypted
at rest), refused when tampered with, thresholds derived for size and target, identity templates."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gallery_helpers import EMBEDDER, THRESHOLDS

from edgeface.config import load_config
from edgeface.errors import BundleRejected
from edgeface.evaluation.distractors import sample, toy_model
from edgeface.evaluation.embeddings import lfw_embeddings
from edgeface.evaluation.lfw import people
from edgeface.gallery import cohort
from edgeface.gallery.bundle import verify_bundle
from edgeface.gallery.manifest import EmbedderRef
from edgeface.gallery.match import Gallery
from edgeface.gallery.publish import publish
from edgeface.gallery.store import GalleryStore
from edgeface.gallery.sync import sync_once
from edgeface.vision.calibration import gallery_thresholds
from edgeface.vision.engine import Engine

ENROLLED, OTHERS, IMAGES = 48, 24, 3


def _content(vectors: np.ndarray, labels: list[int], names: list[str]) -> tuple[list[dict], list[dict]]:  # type: ignore[type-arg]
    entries = [
        {
            "identity": names[lab],
            "image": f"{i:064x}",
            "source": "test",
            "consent": "test",
            "enrolled_by": "pytest",
            "enrolled_at": "2025-01-01T00:00:00Z",
        }
        for i, lab in enumerate(labels)
    ]
    return entries, [{"id": n, "name": n.replace("_", " ")} for n in names]


@pytest.fixture(scope="module")
def lfw_case(lfw_root: Path, tmp_path_factory: pytest.TempPathFactory, signer: Ed25519PrivateKey):  # type: ignore[no-untyped-def]
    """A real gallery: 48 LFW people with 4+ images, 3 enrolled images each, published with the default
    embedder; probes: each one's 4th image, and one image of 24 people not enrolled."""
    everyone = people(lfw_root)
    multi = sorted(n for n, ps in everyone.items() if len(ps) >= IMAGES + 1)
    enrolled = multi[:ENROLLED]
    others = sorted(n for n, ps in everyone.items() if len(ps) == 1)[:OTHERS]
    gallery_paths = [p for n in enrolled for p in everyone[n][:IMAGES]]
    mated = [everyone[n][IMAGES] for n in enrolled]
    non_mated = [everyone[n][0] for n in others]
    config = load_config(None)
    emb = lfw_embeddings(config, gallery_paths + mated + non_mated)
    assert emb.found.all()
    g = emb.vectors[: len(gallery_paths)]
    card = Engine(config).embedder_card
    assert card.embedder is not None
    ref = EmbedderRef(card.id, card.sha256, card.embedder.dim, card.embedder.metric)
    entries, identities = _content(g, [i for i in range(ENROLLED) for _ in range(IMAGES)], enrolled)
    pub = tmp_path_factory.mktemp("norm") / "pub"
    published = publish(
        pub,
        vectors=g,
        entries=entries,
        identities=identities,
        embedder=ref,
        thresholds=gallery_thresholds(card.embedder, len(g), 0.01),
        signer=signer,
        target_fpir=0.01,
    )
    probes = emb.vectors[len(gallery_paths) :]
    return published, ref, enrolled, probes[:ENROLLED], probes[ENROLLED:]


def test_normalisation_is_signed_and_applied_on_open(lfw_case, signer) -> None:  # type: ignore[no-untyped-def]
    published, ref, enrolled, mated, non_mated = lfw_case
    m = published.manifest
    assert m.normalisation is not None and m.normalisation["method"] == "s-norm"
    assert set(m.normalisation["files"]) == {"norm_stats.npy", "cohort.npy", "cohort_labels.npy"}
    assert all(name in m.files for name in m.normalisation["files"])  # each hashed in the signed manifest
    assert m.thresholds["cosine"] < 1 < m.thresholds["normalised"]  # raw kept for older units, normalised added
    verify_bundle(published.dir, [signer.public_key()], embedder_sha256=ref.sha256)

    g = Gallery.open(published.dir, [signer.public_key()], embedder_sha256=ref.sha256)
    try:
        assert g.normaliser is not None and len(g.normaliser.cohort) == ENROLLED
        d = g.identify(mated[0])
        assert d.space == "normalised" and d.threshold == m.thresholds["normalised"]
        assert all(c.normalised is not None for c in d.candidates)
        norms = [c.normalised for c in d.candidates]
        assert norms == sorted(norms, reverse=True)  # ranked by the score decided on
        hits = [g.identify(p).candidates[0].identity for p in mated]
        assert sum(h == n for h, n in zip(hits, enrolled, strict=True)) >= ENROLLED - 3
        # the configured raw override decides on raw cosine, normalised scores still reported
        raw = g.identify(mated[0], threshold=0.5)
        assert raw.space == "cosine" and raw.match is not None and raw.candidates[0].normalised is not None
        # a normalised override moves the decision, not the scores
        strict = g.identify(mated[0], normalised_threshold=1000.0)
        assert strict.match is None and strict.candidates == d.candidates
        assert max(g.identify(p).candidates[0].normalised for p in non_mated) < max(  # type: ignore[type-var]
            g.identify(p).candidates[0].normalised for p in mated
        )
    finally:
        g.close()


def test_encrypted_store_applies_the_same_normalisation(lfw_case, signer, serve, device_key) -> None:  # type: ignore[no-untyped-def]
    published, ref, _, mated, _ = lfw_case
    url, _ = serve(published.dir.parent)
    store = GalleryStore(
        published.dir.parent.parent / "device",
        trusted=[signer.public_key()],
        key=device_key,
        embedder_sha256=ref.sha256,
    )
    assert sync_once(store, url).status == "updated"
    installed = store.current_dir()
    assert installed is not None
    for name in published.manifest.normalisation["files"]:  # type: ignore[index]
        data = (installed / name).read_bytes()
        assert not data.startswith(b"\x93NUMPY") and data != (published.dir / name).read_bytes()  # encrypted
    plain = Gallery.open(published.dir, [signer.public_key()], embedder_sha256=ref.sha256)
    enc = store.open()
    assert enc is not None
    try:
        for p in mated[:8]:
            a, b = plain.identify(p), enc.identify(p)
            assert [c.identity for c in a.candidates] == [c.identity for c in b.candidates]
            assert [c.normalised for c in a.candidates] == pytest.approx([c.normalised for c in b.candidates])
            assert (a.space, a.threshold) == (b.space, b.threshold)
    finally:
        plain.close()
        enc.close()


@pytest.mark.parametrize("name", ["norm_stats.npy", "cohort_labels.npy", "cohort.npy"])
def test_a_tampered_cohort_file_is_refused(lfw_case, signer, tmp_path: Path, name: str) -> None:  # type: ignore[no-untyped-def]
    published, ref, _, _, _ = lfw_case
    bad = tmp_path / "bundle"
    shutil.copytree(published.dir, bad)
    data = bytearray((bad / name).read_bytes())
    if len(data) > 128:
        data[-1] ^= 0x01  # one bit of the data
    else:
        data += b"\x00" * 4  # cohort.npy holds no extra people here: a header only; grow it
    (bad / name).write_bytes(bytes(data))
    with pytest.raises(BundleRejected) as e:
        Gallery.open(bad, [signer.public_key()], embedder_sha256=ref.sha256)
    assert e.value.reason in ("hash_mismatch", "size_mismatch")
    with pytest.raises(BundleRejected):
        verify_bundle(bad, [signer.public_key()])


def _resigned_with(src: Path, dst: Path, signer: Ed25519PrivateKey, name: str, data: np.ndarray) -> None:
    """A copy of bundle ``src`` whose ``name`` holds ``data``, hashed into a re-signed manifest: what a
    publisher that wrote wrong normalisation data would sign (every file matches; the data do not fit)."""
    import hashlib
    import io
    import json

    from edgeface.gallery.bundle import MANIFEST, SIGNATURE
    from edgeface.gallery.signing import sign

    shutil.copytree(src, dst)
    buf = io.BytesIO()
    np.save(buf, data)
    raw = buf.getvalue()
    (dst / name).write_bytes(raw)
    doc = json.loads((dst / MANIFEST).read_text())
    doc["files"][name] = {"sha256": hashlib.sha256(raw).hexdigest(), "size": len(raw)}
    manifest = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
    (dst / MANIFEST).write_bytes(manifest)
    (dst / SIGNATURE).write_bytes(sign(manifest, signer))


def test_signed_but_inconsistent_normalisation_data_is_refused(lfw_case, signer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Files that match the signed manifest but do not fit together (a publisher bug) are refused as a
    format error that says what does not fit, rather than scoring with wrong statistics."""
    published, ref, _, _, _ = lfw_case
    trusted = [signer.public_key()]
    stats = np.load(published.dir / "norm_stats.npy")
    labels = np.load(published.dir / "cohort_labels.npy")
    assert stats.shape[0] == ENROLLED and stats.shape[1] != ENROLLED + 1 and (labels >= 0).all()

    # a cohort member beyond the statistics: the files cannot be assembled
    _resigned_with(published.dir, tmp_path / "labels", signer, "cohort_labels.npy", labels + ENROLLED)
    with pytest.raises(BundleRejected) as e:
        Gallery.open(tmp_path / "labels", trusted, embedder_sha256=ref.sha256)
    assert e.value.reason == "format"
    assert "normalisation data is inconsistent" in str(e.value) and "cohort labels" in str(e.value)

    # statistics for one identity more than the manifest lists
    more = np.concatenate([stats, stats[:1]])
    _resigned_with(published.dir, tmp_path / "stats", signer, "norm_stats.npy", more)
    with pytest.raises(BundleRejected) as e:
        Gallery.open(tmp_path / "stats", trusted, embedder_sha256=ref.sha256)
    assert e.value.reason == "format"
    assert f"normalisation statistics for {ENROLLED + 1} identities" in str(e.value)
    assert f"the manifest says {ENROLLED} of {ref.dim}" in str(e.value)


def test_a_bundle_without_normalisation_decides_on_raw_cosine(tmp_path: Path, signer) -> None:  # type: ignore[no-untyped-def]
    v, lab = sample(toy_model(), 60, 1, seed=3)
    entries, identities = _content(v, lab.tolist(), [f"p{i}" for i in range(60)])
    pub = publish(
        tmp_path / "pub",
        vectors=v,
        entries=entries,
        identities=identities,
        embedder=EMBEDDER,
        thresholds=THRESHOLDS,
        signer=signer,
        normalise=False,
    )
    assert pub.manifest.normalisation is None and "normalised" not in pub.manifest.thresholds
    g = Gallery.open(pub.dir, [signer.public_key()])
    try:
        d = g.identify(v[5])
        assert d.space == "cosine" and d.threshold == THRESHOLDS["cosine"]
        assert d.match is not None and d.match.identity == "p5" and d.match.normalised is None
    finally:
        g.close()


def test_too_small_a_gallery_is_published_raw(tmp_path: Path, signer) -> None:  # type: ignore[no-untyped-def]
    v, lab = sample(toy_model(), cohort.MIN_COHORT - 1, 1, seed=4)
    entries, identities = _content(v, lab.tolist(), [f"p{i}" for i in range(len(v))])
    kw = {"entries": entries, "identities": identities, "embedder": EMBEDDER, "thresholds": THRESHOLDS}
    pub = publish(tmp_path / "a", vectors=v, signer=signer, **kw)  # type: ignore[arg-type]
    assert pub.manifest.normalisation is None
    extra, _ = sample(toy_model(), 200, 1, seed=5)  # people not in the gallery complete the cohort
    pub = publish(tmp_path / "b", vectors=v, signer=signer, extra_cohort=extra, **kw)  # type: ignore[arg-type]
    assert pub.manifest.normalisation is not None and pub.manifest.normalisation["cohort_source"] == "gallery+extra"
    g = Gallery.open(pub.dir, [signer.public_key()])
    try:
        assert g.normaliser is not None and int((g.normaliser.cohort_labels < 0).sum()) == 200
        assert g.identify(v[3]).match.identity == "p3"  # type: ignore[union-attr]
    finally:
        g.close()


def test_threshold_derived_for_size_and_target() -> None:
    """Higher for a bigger gallery and a stricter target; and it holds: non-enrolled probes of the same
    population reach it about as often as the target says."""
    model = toy_model()
    v, lab = sample(model, 2400, 1, seed=6)
    names = [f"p{i}" for i in range(len(v))]

    def derive(n: int, target: float) -> tuple[float, cohort.Normaliser]:
        norm = cohort.fit(v[:n], lab[:n], names[:n])
        assert norm is not None
        return cohort.derive_threshold(norm, v[:n], lab[:n], n, target)[0], norm

    small, _ = derive(300, 0.05)
    large, norm = derive(2400, 0.05)
    stricter, _ = derive(2400, 0.005)
    assert small < large < stricter
    probes, _ = sample(model, 4000, 1, seed=7)  # people not enrolled
    by_id = cohort.IdentityRows(lab, len(v))
    from edgeface.gallery.scoring import rank

    best = []
    for p in probes:
        sims = v @ p
        top = np.argsort(-sims)[:32]
        best.append(rank(p, top, sims[top], lab, 1, norm=norm, vectors=v, by_identity=by_id, space="normalised")[0])
    fpir = float(np.mean([c.normalised >= large for c in best]))  # type: ignore[operator]
    assert 0.02 <= fpir <= 0.10, fpir


def test_a_template_finds_the_person_a_single_image_would_not(tmp_path: Path, signer) -> None:  # type: ignore[no-untyped-def]
    """Person A's three photos each lean a different way from A's face; person B's one photo happens to be
    nearer a frontal probe of A than any of A's. By best image B leads; A's template (their mean) is
    nearer still, and the normalised decision ranks A first."""
    dim, rng = 128, np.random.default_rng(8)
    e = np.eye(dim, dtype=np.float32)

    def unit(x: np.ndarray) -> np.ndarray:
        return (x / np.linalg.norm(x)).astype(np.float32)

    a = [unit(e[0] + 0.6 * e[i]) for i in (1, 2, 3)]  # cos(probe, each) = 0.857
    b = unit(e[0] + 0.45 * e[4])  # cos 0.912; A's template: cos 0.945
    crowd = np.stack([unit(0.3 * e[0] + rng.normal(size=dim) * 0.1 + e[10 + i % 100]) for i in range(80)])
    vectors = np.stack([*a, b, *crowd])
    labels = [0, 0, 0, 1, *range(2, 82)]
    entries, identities = _content(vectors, labels, ["A", "B", *[f"c{i}" for i in range(80)]])
    pub = publish(
        tmp_path / "pub",
        vectors=vectors,
        entries=entries,
        identities=identities,
        embedder=EMBEDDER,
        thresholds=THRESHOLDS,
        signer=signer,
    )
    g = Gallery.open(pub.dir, [signer.public_key()])
    try:
        by_image = g.identify(e[0], threshold=0.5)  # raw cosine: best image first
        assert [c.identity for c in by_image.candidates[:2]] == ["B", "A"]
        fused = g.identify(e[0])
        assert fused.space == "normalised" and fused.candidates[0].identity == "A"
        assert fused.candidates[0].score == pytest.approx(0.857, abs=1e-3)  # raw: A's best image, for the reviewer
    finally:
        g.close()
