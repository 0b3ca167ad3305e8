"""gallery.sync_max_bytes: a bundle (or a delta's target) larger than the limit is refused from its signed
manifest, before any of its files is downloaded; at the limit it installs."""

from __future__ import annotations

from gallery_helpers import Content

from edgeface.gallery.sync import sync_once


def _files_fetched(rec) -> list[str]:  # type: ignore[no-untyped-def]
    return [r["path"] for r in rec.requests if r["path"].endswith((".npy", ".ann", ".ndjson"))]


def test_a_bundle_over_the_limit_is_refused_before_download(tmp_path, content, signer, make_store, serve) -> None:  # type: ignore[no-untyped-def]
    pub = tmp_path / "pub"
    published = content.publish(pub, signer)
    total = published.manifest.total_bytes
    url, rec = serve(pub)
    store = make_store()
    r = sync_once(store, url, max_bytes=total - 1)
    assert (r.status, r.reason, r.installed) == ("refused", "too_large", 0), r
    assert "gallery.sync_max_bytes" in r.message and str(total) in r.message
    assert _files_fetched(rec) == [] and store.current_dir() is None
    r = sync_once(store, url, max_bytes=total)  # exactly at the limit: allowed
    assert (r.status, r.installed) == ("updated", 1), r


def test_a_delta_is_refused_when_its_target_is_over_the_limit(tmp_path, signer, make_store, serve) -> None:  # type: ignore[no-untyped-def]
    base = Content(300, seed=11)
    pub = tmp_path / "pub"
    base.publish(pub, signer)
    url, rec = serve(pub)
    store = make_store()
    assert sync_once(store, url).status == "updated"
    published = base.change(remove=3, add=3).publish(pub, signer)
    target = published.manifest.total_bytes
    assert published.deltas[1].total_bytes < target  # the delta alone would fit
    before = len(rec.requests)
    r = sync_once(store, url, max_bytes=target - 1)
    assert (r.status, r.reason, r.installed) == ("refused", "too_large", 1), r
    assert _files_fetched(_Since(rec, before)) == []  # no file of the delta or the bundle
    assert sync_once(store, url, max_bytes=target).installed == 2


class _Since:
    """The requests a recorder saw after the first ``start``."""

    def __init__(self, rec, start: int) -> None:  # type: ignore[no-untyped-def]
        self.requests = rec.requests[start:]
