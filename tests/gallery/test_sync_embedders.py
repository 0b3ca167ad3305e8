"""Sync with a folder per embedder over real HTTP: a unit asks its model's folder first, falls back to the
root of a single-embedder publish folder, and never installs another model's bundle from either."""

from __future__ import annotations

from gallery_helpers import EMBEDDER, OTHER_EMBEDDER

from edgeface.gallery.sync import sync_once


def test_the_units_model_folder_is_asked_first(tmp_path, content, signer, make_store, serve):
    pub = tmp_path / "pub"
    content.publish(pub / EMBEDDER.id, signer)
    content.change(2, 2).publish(pub / OTHER_EMBEDDER.id, signer, embedder=OTHER_EMBEDDER)
    content.change(50, 0).publish(pub, signer, embedder=OTHER_EMBEDDER)  # the root: fewer rows
    url, rec = serve(pub)
    store = make_store()
    r = sync_once(store, url, embedder_id=EMBEDDER.id)
    assert (r.status, r.installed) == ("updated", 1)
    assert store.installed_manifest().embedder == EMBEDDER
    assert rec.requests[0]["path"] == f"/{EMBEDDER.id}/latest.json"
    assert all(q["path"].startswith(f"/{EMBEDDER.id}/") for q in rec.requests)
    other = make_store(name="other", embedder=OTHER_EMBEDDER)
    assert sync_once(other, url, embedder_id=OTHER_EMBEDDER.id).installed == 1
    assert len(other.open()) == len(content.vectors)  # its own folder's bundle, not the root's


def test_single_folder_fallback_and_a_wrong_model_refused(tmp_path, content, signer, make_store, serve):
    pub = tmp_path / "pub"
    content.publish(pub, signer)  # `edgeface gallery build`: one folder, no per-model folders
    url, rec = serve(pub)
    store = make_store()
    r = sync_once(store, url, embedder_id=EMBEDDER.id)
    assert (r.status, r.installed) == ("updated", 1)
    assert [q["path"] for q in rec.requests[:2]] == [f"/{EMBEDDER.id}/latest.json", "/latest.json"]
    other = make_store(name="other", embedder=OTHER_EMBEDDER)
    r = sync_once(other, url, embedder_id=OTHER_EMBEDDER.id)
    assert (r.status, r.reason, r.installed) == ("refused", "embedder_mismatch", 0)
    assert f"no gallery is published for embedder {OTHER_EMBEDDER.id}" in r.message
    assert other.open() is None
