"""Search: Annoy + exact re-rank keeps exact-search recall on a realistic set; the open-set decision."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from gallery_helpers import EMBEDDER

from edgeface.evaluation.distractors import sample, toy_model
from edgeface.gallery.bundle import write_bundle
from edgeface.gallery.index import exact_top1, plan_for
from edgeface.gallery.match import Gallery


def _write_toy_bundle(path: Path, signer: Any, vectors: Any, labels: Any, ids: list[dict[str, Any]]) -> Path:
    """A signed bundle of ``vectors``, one entry per row, labelled by person."""
    entries = [{"identity": f"p{int(p)}", "image": f"{i:064x}"} for i, p in enumerate(labels)]
    write_bundle(
        path,
        vectors=vectors,
        entries=entries,
        identities=ids,
        version=1,
        embedder=EMBEDDER,
        thresholds={"cosine": 0.8},
        signer=signer,
    )
    return path


def _toy_gallery(tmp_path: Path, signer: Any, people: int, per: int, *, seed: int, ids: list[dict[str, Any]]) -> Any:
    """A signed bundle of ``per`` toy-model vectors for each of ``people`` identities, opened: (vectors, gallery)."""
    v, lab = sample(toy_model(), people, per, seed=seed)
    return v, Gallery.open(_write_toy_bundle(tmp_path / "b", signer, v, lab, ids), [signer.public_key()])


def test_annoy_recall_matches_exact_search(tmp_path, signer):
    model = toy_model(seed=3)
    vectors, labels = sample(model, 12000, (1, 3), seed=4)  # ~24k face-like vectors, clustered by person
    _write_toy_bundle(tmp_path / "b", signer, vectors, labels, [{"id": f"p{p}", "name": f"P{p}"} for p in range(12000)])
    # probes: new images of enrolled people (mated) and people not enrolled (non-mated: the hard case,
    # whose nearest neighbour is one of many similar strangers)
    rng = np.random.default_rng(5)
    mated_rows = rng.choice(len(vectors), 300, replace=False)
    noise = rng.standard_normal((300, 128)) @ model.within.T
    mated = vectors[mated_rows] + noise.astype(np.float32)
    mated /= np.linalg.norm(mated, axis=1, keepdims=True)
    strangers, _ = sample(model, 300, 1, seed=6)
    queries = np.concatenate([mated, strangers]).astype(np.float32)
    truth, truth_scores = exact_top1(vectors, queries)

    g = Gallery.open(tmp_path / "b", [signer.public_key()], exact_max=0)  # force the index at this size
    assert not g.plan.exact and g.plan.search_k == plan_for(len(vectors)).search_k
    found = [g.search(q, 1) for q in queries]
    top = np.array([r[0] for r, _ in found])
    scores = np.array([s[0] for _, s in found])
    recall = float(np.mean(top == truth))
    assert recall >= 0.99, recall
    np.testing.assert_allclose(scores[top == truth], truth_scores[top == truth], atol=1e-5)  # exact re-rank
    g.close()

    exact = Gallery.open(tmp_path / "b", [signer.public_key()], exact_max=10**9)
    assert exact.plan.exact
    rows, s = exact.search(queries[0], 5)
    assert rows[0] == truth[0] and np.all(np.diff(s) <= 0)
    exact.close()


def test_open_set_decision(tmp_path, signer):
    v, g = _toy_gallery(
        tmp_path, signer, 200, 3, seed=1, ids=[{"id": f"p{p}", "name": f"Person {p}"} for p in range(200)]
    )
    d = g.identify(v[4], top_k=5)
    assert d.match is not None and d.match.identity == "p1" and d.threshold == 0.8
    assert len(d.candidates) == 5 and len({c.identity for c in d.candidates}) == 5  # distinct people
    assert [c.score for c in d.candidates] == sorted([c.score for c in d.candidates], reverse=True)
    stranger, _ = sample(toy_model(), 1, 1, seed=77)
    d = g.identify(stranger[0], top_k=3)
    assert d.match is None and len(d.candidates) == 3  # "no match", but the leads are still listed
    assert d.candidates[0].score < 0.8
    d = g.identify(stranger[0], top_k=3, threshold=-1.0)  # a configured override
    assert d.match is not None
    g.close()


def test_an_identity_without_a_name_is_shown_by_its_id(tmp_path, signer):
    """A bundle's identity may have no display name; a candidate then carries its id as the name (never
    'None'), so the reviewer and the result payload still say who it is."""
    ids = [{"id": f"p{p}"} if p % 2 else {"id": f"p{p}", "name": f"Person {p}"} for p in range(40)]
    v, g = _toy_gallery(tmp_path, signer, 40, 1, seed=2, ids=ids)
    named, unnamed = g.identify(v[4]).candidates[0], g.identify(v[5]).candidates[0]
    assert (named.identity, named.name) == ("p4", "Person 4")
    assert (unnamed.identity, unnamed.name) == ("p5", "p5")
    g.close()
