"""A unit running a compiled variant (an Edge TPU build) syncs the gallery published for its reference model:
it asks its own folder, then the reference's, over real HTTP, and installs the reference's bundle."""

from __future__ import annotations

from gallery_helpers import EMBEDDER, OTHER_EMBEDDER

from edgeface.gallery.manifest import UnitEmbedder
from edgeface.gallery.store import GalleryStore
from edgeface.gallery.sync import sync_once

VARIANT_ID = f"{EMBEDDER.id}-edgetpu"
VARIANT_SHA = "ef" * 32


def test_a_variant_unit_takes_its_references_folder(tmp_path, content, signer, serve):
    pub = tmp_path / "pub"
    content.publish(pub / EMBEDDER.id, signer)  # the server publishes for the reference model
    content.change(2, 2).publish(pub / OTHER_EMBEDDER.id, signer, embedder=OTHER_EMBEDDER)
    content.change(50, 0).publish(pub, signer, embedder=OTHER_EMBEDDER)  # the root: another model
    url, rec = serve(pub)
    unit = UnitEmbedder(
        VARIANT_SHA, EMBEDDER.space, frozenset({VARIANT_SHA, EMBEDDER.sha256}), 128, (VARIANT_ID, EMBEDDER.id)
    )
    store = GalleryStore(tmp_path / "unit", trusted=[signer.public_key()], embedder=unit)
    r = sync_once(store, url, embedder_id=VARIANT_ID)
    assert (r.status, r.installed) == ("updated", 1)
    assert [q["path"] for q in rec.requests[:2]] == [f"/{VARIANT_ID}/latest.json", f"/{EMBEDDER.id}/latest.json"]
    assert store.installed_manifest().embedder == EMBEDDER
    assert len(store.open()) == len(content.vectors)  # the reference's bundle, not the root's
