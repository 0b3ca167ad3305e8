"""The operator's thresholds (gallery.threshold, gallery.normalised_threshold) reach the installed gallery's
decisions, each compared with the score of its own space: the raw one with the raw cosine (and making the
decision raw), the normalised one with the S-norm score, and only on a bundle that carries normalisation."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from gallery_helpers import Content

from edgeface.config import load_config
from edgeface.gallery.match import Gallery
from edgeface.gallery.store import GalleryStore


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory, signer: Ed25519PrivateKey) -> dict[str, Any]:
    """The same 300 synthetic people published with normalisation and without it, and a probe: an
    enrolled image with noise, whose best candidate has a raw cosine below 1 and a normalised score."""
    content = Content(300, seed=7)
    root = tmp_path_factory.mktemp("thresholds")
    normed = content.publish(root / "normed", signer)
    raw = content.publish(root / "raw", signer, normalise=False)
    assert normed.manifest.normalisation is not None and raw.manifest.normalisation is None
    rng = np.random.default_rng(3)
    probe = content.vectors[10] + rng.normal(scale=0.02, size=content.vectors.shape[1]).astype(np.float32)
    pub = root / "gallery.pub"
    pub.write_bytes(signer.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return {"normed": normed, "raw": raw, "probe": probe / np.linalg.norm(probe), "pub": pub, "signer": signer}


def _installed(
    make_store: Callable[..., GalleryStore], bundles: dict[str, Any], which: str, name: str, *sets: str
) -> Gallery:
    """A bundle installed on a unit whose configuration has ``sets``; the store opened as the daemon does."""
    published = bundles[which]
    keys = f'gallery.trusted_keys=["{bundles["pub"]}"]'
    config = load_config(None, overrides=["gallery.encrypt=false", keys, *sets])
    store = make_store(name=name)
    store.open_options = GalleryStore.from_config(config.gallery, config.models).open_options
    staged = store.staging(published.manifest.gallery_version)
    shutil.rmtree(staged, ignore_errors=True)
    shutil.copytree(published.dir, staged)
    store.install(staged)
    g = store.open()
    assert g is not None
    return g


def _best(g: Gallery, probe: np.ndarray) -> Any:
    return g.identify(probe).candidates[0]


def test_the_bundle_decides_by_its_own_rule_when_nothing_is_configured(make_store, bundles) -> None:  # type: ignore[no-untyped-def]
    g = _installed(make_store, bundles, "normed", "plain")
    d = g.identify(bundles["probe"])
    assert d.space == "normalised" and d.threshold == bundles["normed"].manifest.thresholds["normalised"]
    assert d.match is not None and d.match.score < 1 and d.match.normalised is not None
    assert d.match.normalised > d.match.score + 0.01  # the two spaces differ, so comparing in the wrong one shows
    g.close()


@pytest.mark.parametrize("margin, matches", [(-0.005, True), (0.005, False)])
def test_configured_raw_threshold_decides_on_raw_cosine(make_store, bundles, margin: float, matches: bool) -> None:  # type: ignore[no-untyped-def]
    for which in ("normed", "raw"):
        probe = Gallery.open(bundles[which].dir, [bundles["signer"].public_key()])
        best = _best(probe, bundles["probe"])
        probe.close()
        t = round(best.score + margin, 6)
        g = _installed(make_store, bundles, which, f"{which}{margin}", f"gallery.threshold={t}")
        d = g.identify(bundles["probe"])
        assert d.space == "cosine" and d.threshold == t, (which, d.space, d.threshold)
        assert (d.match is not None) is matches, (which, best, t)
        g.close()


@pytest.mark.parametrize("margin, matches", [(-0.005, True), (0.005, False)])
def test_configured_normalised_threshold_decides_on_the_normalised_score(
    make_store,
    bundles,
    margin: float,
    matches: bool,  # type: ignore[no-untyped-def]
) -> None:
    g0 = _installed(make_store, bundles, "normed", f"base{margin}")
    best = _best(g0, bundles["probe"])
    g0.close()
    t = round(best.normalised + margin, 6)
    g = _installed(make_store, bundles, "normed", f"n{margin}", f"gallery.normalised_threshold={t}")
    d = g.identify(bundles["probe"])
    assert d.space == "normalised" and d.threshold == t
    assert (d.match is not None) is matches
    g.close()
    # the same threshold passed to identify() on a gallery opened without it
    g = _installed(make_store, bundles, "normed", f"arg{margin}")
    d = g.identify(bundles["probe"], normalised_threshold=t)
    assert d.space == "normalised" and d.threshold == t and (d.match is not None) is matches
    g.close()
    # the raw override wins over the normalised one (and decides raw)
    g = _installed(
        make_store, bundles, "normed", f"both{margin}", f"gallery.normalised_threshold={t}", "gallery.threshold=0.1"
    )
    d = g.identify(bundles["probe"])
    assert d.space == "cosine" and d.threshold == 0.1 and d.match is not None
    g.close()


def test_normalised_threshold_is_ignored_on_a_bundle_without_normalisation(make_store, bundles) -> None:  # type: ignore[no-untyped-def]
    g = _installed(make_store, bundles, "raw", "rawonly", "gallery.normalised_threshold=1000")
    d = g.identify(bundles["probe"])
    assert d.space == "cosine" and d.threshold == bundles["raw"].manifest.threshold
    assert d.match is not None
    g.close()


def test_the_search_pool_covers_several_images_per_identity_asked_for() -> None:
    """identify() fetches pool_size(top_k) rows so that top_k distinct people survive merging their rows:
    at least 4 rows per identity asked for, 8 spare and 32 in all, and no more than that (each row costs
    an exact re-rank)."""
    from edgeface.gallery.scoring import pool_size

    assert [pool_size(k) for k in (1, 3, 8, 9, 10, 25)] == [32, 32, 32, 36, 40, 100]
    for k in range(1, 200):
        assert pool_size(k) == max(4 * k, k + 8, 32)


def test_rank_merges_rows_per_identity_and_orders_by_the_space_decided_on() -> None:
    """rank() keeps each identity's first (best) row, cuts to top_k, reports raw and normalised scores
    and sorts by the normalised score only when that space decides; it refuses what it cannot do, saying
    what is missing."""
    from edgeface.evaluation.distractors import sample, toy_model
    from edgeface.gallery import cohort
    from edgeface.gallery.scoring import Scored, rank

    v, lab = sample(toy_model(), 120, 2, seed=11)  # 120 people, 2 images each
    rows = np.array([5, 4, 9, 2, 3, 8])
    scores = np.array([0.9, 0.85, 0.8, 0.7, 0.6, 0.5])
    labels = np.zeros(len(v), np.int64)
    labels[[5, 4]] = 7
    labels[[9, 3]] = 2
    labels[[2, 8]] = 4
    got = rank(v[0], rows, scores, labels, 5)
    assert got == [Scored(7, 0.9, 5, None), Scored(2, 0.8, 9, None), Scored(4, 0.7, 2, None)]
    assert rank(v[0], rows, scores, labels, 2) == got[:2]
    with pytest.raises(ValueError, match=r"^ranking by normalised score needs the bundle's normalisation data$"):
        rank(v[0], rows, scores, labels, 5, space="normalised")
    with pytest.raises(ValueError):
        rank(v[0], rows, scores[:-1], labels, 5)  # a row without its score

    norm = cohort.fit(v, lab, [f"p{i}" for i in range(120)])
    assert norm is not None
    by_id = cohort.IdentityRows(lab, 120)
    probe = v[10]
    sims = v @ probe
    top = np.argsort(-sims)[:32]
    with pytest.raises(ValueError, match=r"^normalised scores need the gallery's vectors and identity rows$"):
        rank(probe, top, sims[top], lab, 5, norm=norm, vectors=v)
    with pytest.raises(ValueError, match=r"^normalised scores need the gallery's vectors and identity rows$"):
        rank(probe, top, sims[top], lab, 5, norm=norm, by_identity=by_id)
    raw = rank(probe, top, sims[top], lab, 8, norm=norm, vectors=v, by_identity=by_id)
    normed = rank(probe, top, sims[top], lab, 8, norm=norm, vectors=v, by_identity=by_id, space="normalised")
    as_row = rank(probe[None, :], top, sims[top], lab, 8, norm=norm, vectors=v, by_identity=by_id)
    assert as_row == raw  # a (1, d) probe as a batch of one gives the same
    assert [c.score for c in raw] == sorted((c.score for c in raw), reverse=True)  # raw order kept
    assert [c.normalised for c in normed] == sorted((c.normalised for c in normed), reverse=True)  # type: ignore[type-var]
    assert [c.identity for c in raw] != [c.identity for c in normed]  # the spaces disagree here, so order shows
    assert (
        normed[0].identity == int(lab[10]) and normed[0].row == int(top[0]) and normed[0].score == float(sims[top[0]])
    )
    expected = norm.normalise(
        cohort.templates_of(v, by_id, [normed[0].identity]) @ probe, np.array([normed[0].identity]), norm.cohort @ probe
    )
    assert normed[0].normalised == pytest.approx(float(expected[0]), abs=1e-6)
    assert {(c.identity, c.score, c.row) for c in raw} <= {
        (int(lab[r]), float(s), int(r)) for r, s in zip(top, sims[top], strict=True)
    }


def test_a_decision_as_json_and_the_threshold_reached_exactly(make_store, bundles) -> None:  # type: ignore[no-untyped-def]
    """The decision's JSON (what a result payload and the reviewer carry): the match, threshold, space and
    every candidate with identity, name, raw and normalised score (4 places) and row. A best score equal
    to the threshold is a match (the threshold is the lowest score that matches)."""
    g = _installed(make_store, bundles, "normed", "json")
    d = g.identify(bundles["probe"], top_k=3)
    assert d.match is not None and len(d.candidates) == 3
    cands = [
        {
            "identity": c.identity,
            "name": c.name,
            "score": round(c.score, 4),
            "normalised": round(c.normalised, 4),  # type: ignore[arg-type]
            "row": c.row,
        }
        for c in d.candidates
    ]
    assert d.to_dict() == {"match": cands[0], "threshold": d.threshold, "space": "normalised", "candidates": cands}
    assert d.candidates[0].row == 10  # the probe is enrolled row 10 with noise: that image, its person
    assert cands[0]["identity"] == g.entry(10)["identity"] == "id7-3" and cands[0]["name"] == "Person 3"
    assert (g.identity(0)["id"], g.identity(299)["id"]) == ("id7-0", "id7-299")
    assert all(c.score != round(c.score, 4) for c in d.candidates)  # so the rounding shows
    best = d.candidates[0]
    exact = g.identify(bundles["probe"], normalised_threshold=best.normalised)
    assert exact.match == best
    above = g.identify(bundles["probe"], normalised_threshold=float(np.nextafter(best.normalised, np.inf)))  # type: ignore[arg-type]
    assert above.match is None and above.to_dict()["match"] is None and above.candidates[0] == best
    assert g.identify(bundles["probe"], threshold=best.score).match == best
    g.close()
    raw = _installed(make_store, bundles, "raw", "json-raw")
    c = raw.identify(bundles["probe"]).candidates[0]
    assert "normalised" not in c.to_dict() and c.decided_on("cosine") == c.score
    with pytest.raises(ValueError, match=f"^candidate {c.identity} has no normalised score$"):
        c.decided_on("normalised")
    raw.close()


def test_ndjson_lines_of_an_empty_and_of_a_small_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The identities and entries files are read line by line without parsing all of them: an empty file
    (a gallery with nothing enrolled) has no lines rather than failing to map; each line is one object."""
    from edgeface.gallery.match import _Lines

    empty = tmp_path / "empty.ndjson"
    empty.write_bytes(b"")
    lines = _Lines(empty)
    assert len(lines) == 0 and lines.starts.dtype == np.int64 and lines.starts.shape == (0,)
    two = tmp_path / "two.ndjson"
    two.write_bytes(b'{"id": "a"}\n{"id": "b", "name": "B"}\n')
    lines = _Lines(two)
    assert len(lines) == 2 and lines[0] == {"id": "a"} and lines[1] == {"id": "b", "name": "B"}
    assert lines.raw(1) == b'{"id": "b", "name": "B"}\n'


def test_a_folder_without_a_manifest_or_signature_is_refused_as_incomplete(tmp_path, bundles) -> None:  # type: ignore[no-untyped-def]
    """Opening an empty or half-copied bundle folder is a refusal that says what is missing, not a
    FileNotFoundError from deep inside."""
    from edgeface.errors import BundleRejected

    trusted = [bundles["signer"].public_key()]
    with pytest.raises(BundleRejected, match="manifest") as e:
        Gallery.open(tmp_path, trusted)
    assert e.value.reason == "missing_file"
    half = tmp_path / "half"
    shutil.copytree(bundles["raw"].dir, half)
    for sig in half.glob("*.sig"):
        sig.unlink()
    with pytest.raises(BundleRejected):
        Gallery.open(half, trusted)
