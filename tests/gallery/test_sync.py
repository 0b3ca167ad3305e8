"""Sync end to end over real HTTP on loopback against the gallery server: every refusal leaves the old
gallery answering; interrupted downloads resume with Range; unchanged publications cost one 304."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gallery_helpers import OTHER_EMBEDDER, Content

from edgeface.gallery.publish import POINTER, Pointer, write_pointer
from edgeface.gallery.sync import Syncer, sync_once


def _answers(store, content: Content, version: int) -> None:  # type: ignore[no-untyped-def]
    """The installed gallery opens, is the expected version, and identifies an enrolled vector."""
    g = store.open()
    assert g is not None and g.version == version
    row = len(content.vectors) - 1
    d = g.identify(content.vectors[row], top_k=3)
    assert d.match is not None and d.match.identity == content.entries[row]["identity"]
    g.close()


def test_full_sync_then_not_modified(tmp_path, content, signer, make_store, serve, device_key):
    pub = tmp_path / "pub"
    content.publish(pub, signer)
    url, rec = serve(pub)
    store = make_store(device_key)
    r = sync_once(store, url)
    assert (r.status, r.installed, r.via) == ("updated", 1, "full")
    _answers(store, content, 1)
    r = sync_once(store, url)
    assert r.status == "not_modified" and r.downloaded_bytes == 0
    assert rec.requests[-1]["path"] == "/" + POINTER and rec.requests[-1]["if_none_match"]
    # the store on disk holds only ciphertext
    vec = (store.current_dir() / "vectors.npy").read_bytes()
    assert content.vectors[:1].tobytes()[:64] not in vec and not vec.startswith(b"\x93NUMPY")


def test_delta_sync_transfers_a_small_fraction(tmp_path, signer, make_store, serve, device_key):
    base = Content(1500, seed=5)
    pub = tmp_path / "pub"
    base.publish(pub, signer)
    url, rec = serve(pub)
    store = make_store(device_key)
    full = sync_once(store, url)
    n = len(base.vectors)
    changed = base.change(remove=n // 100, add=n // 100)  # remove 1%, add 1%
    published = changed.publish(pub, signer)
    r = sync_once(store, url)
    assert (r.status, r.via, r.installed) == ("updated", "delta", 2)
    assert r.downloaded_bytes <= 0.05 * full.downloaded_bytes, (r.downloaded_bytes, full.downloaded_bytes)
    assert published.deltas[1].total_bytes <= 0.05 * published.manifest.total_bytes
    _answers(store, changed, 2)
    # the result is byte-identical to the full bundle, checked against its signed manifest
    assert not (store.current_dir() / "local-index.json").exists()
    g = store.open()
    removed = base.entries[0]["identity"]
    assert all(g.identity(int(i))["id"] != removed for i in np.unique(g.labels))
    g.close()


def test_broken_delta_falls_back_to_full(tmp_path, signer, make_store, serve):
    base = Content(300, seed=6)
    pub = tmp_path / "pub"
    base.publish(pub, signer)
    url, _ = serve(pub)
    store = make_store()
    sync_once(store, url)
    base.change(3, 3).publish(pub, signer)
    ops = next((pub / "deltas").glob("1-2")) / "add_vectors.npy"
    data = bytearray(ops.read_bytes())
    data[-1] ^= 0xFF
    ops.write_bytes(bytes(data))  # the delta's own hash check fails: refuse it, take the full bundle
    r = sync_once(store, url)
    assert (r.status, r.via, r.installed) == ("updated", "full", 2)


def _publish_two(tmp_path: Path, signer: Ed25519PrivateKey, content: Content) -> Path:
    pub = tmp_path / "pub"
    content.publish(pub, signer)
    return pub


def _refused(store, url, reason, content):  # type: ignore[no-untyped-def]
    r = sync_once(store, url)
    assert (r.status, r.reason) == ("refused", reason), r
    assert r.installed == 1
    _answers(store, content, 1)


def test_tampered_file_on_server_is_refused(tmp_path, content, signer, make_store, serve, device_key):
    pub = _publish_two(tmp_path, signer, content)
    url, _ = serve(pub)
    store = make_store(device_key)
    sync_once(store, url)
    content.change(2, 2).publish(pub, signer, delta_depth=0)
    victim = pub / "v0000000002" / "entries.ndjson"
    victim.write_bytes(victim.read_bytes().replace(b"Person", b"Persom", 1).replace(b"pytest", b"intrud", 1))
    _refused(store, url, "hash_mismatch", content)


def test_wrong_signature_is_refused(tmp_path, content, signer, make_store, serve):
    pub = _publish_two(tmp_path, signer, content)
    url, _ = serve(pub)
    store = make_store()
    sync_once(store, url)
    content.change(2, 2).publish(pub, Ed25519PrivateKey.generate())  # a key the unit does not trust
    _refused(store, url, "bad_signature", content)


def test_unsigned_is_refused(tmp_path, content, signer, make_store, serve):
    pub = _publish_two(tmp_path, signer, content)
    url, _ = serve(pub)
    store = make_store()
    sync_once(store, url)
    content.change(2, 2).publish(pub, signer)
    (pub / "v0000000002" / "manifest.sig").unlink()
    for d in (pub / "deltas").iterdir():
        (d / "delta.sig").unlink()
    _refused(store, url, "unsigned", content)


def test_older_version_is_refused(tmp_path, content, signer, make_store, serve):
    pub = _publish_two(tmp_path, signer, content)
    content.change(1, 1).publish(pub, signer)
    url, _ = serve(pub)
    store = make_store()
    assert sync_once(store, url).installed == 2
    # someone edits the signed pointer to say version 1: its signature no longer verifies
    ptr = json.loads((pub / POINTER).read_text())
    ptr.update(version=1, bundle="v0000000001/", deltas={})
    (pub / POINTER).write_text(json.dumps(ptr))
    r = sync_once(store, url)
    assert (r.status, r.reason, r.installed) == ("refused", "bad_signature", 2)
    # the server is restored from an old backup and re-signs its pointer: version 1, validly signed
    write_pointer(pub, Pointer(1, "v0000000001/", {}), signer, 3600)
    r = sync_once(store, url)
    assert (r.status, r.reason, r.installed) == ("refused", "rollback", 2)
    # a signed pointer that lies (says 3, serves the signed version 1) is caught by the signed manifest
    write_pointer(pub, Pointer(3, "v0000000001/", {}), signer, 3600)
    r = sync_once(store, url)
    assert (r.status, r.reason, r.installed) == ("refused", "rollback", 2)
    assert store.open().version == 2


def test_other_embedder_is_refused(tmp_path, content, signer, make_store, serve):
    pub = _publish_two(tmp_path, signer, content)
    url, _ = serve(pub)
    store = make_store()
    sync_once(store, url)
    content.change(2, 2).publish(pub, signer, embedder=OTHER_EMBEDDER, delta_depth=0)
    _refused(store, url, "embedder_mismatch", content)


def test_truncated_download_resumes_with_range(tmp_path, signer, make_store, serve, device_key):
    content = Content(2500, seed=7)  # vectors.npy > 2 MiB: several encryption chunks
    pub = tmp_path / "pub"
    m = content.publish(pub, signer).manifest
    url, rec = serve(pub)
    size = m.files["vectors.npy"].size
    rec.truncate["vectors.npy"] = int(size * 0.7)  # the connection drops at 70%
    store = make_store(device_key)
    r = sync_once(store, url)
    assert (r.status, r.reason, r.installed) == ("failed", "network", 0)
    assert store.open() is None  # nothing half-installed is ever used
    parts = list((store.root / "staging").rglob("vectors.npy.part"))
    assert parts and os.path.getsize(parts[0]) > 0
    r = sync_once(store, url)
    assert (r.status, r.installed) == ("updated", 1)
    ranges = [q["range"] for q in rec.requests if q["path"].endswith("vectors.npy")]
    assert ranges[0] is None and ranges[1] is not None
    offset = int(ranges[1].split("=")[1].rstrip("-"))
    assert 0 < offset <= int(size * 0.7)
    assert r.downloaded_bytes < m.total_bytes  # only the rest was fetched again
    _answers(store, content, 1)


def test_truncated_download_keeps_old_gallery(tmp_path, content, signer, make_store, serve):
    pub = _publish_two(tmp_path, signer, content)
    url, rec = serve(pub)
    store = make_store()
    sync_once(store, url)
    content.change(2, 2).publish(pub, signer, delta_depth=0)
    rec.truncate["index.ann"] = 1000
    r = sync_once(store, url)
    assert r.status == "failed" and r.installed == 1
    _answers(store, content, 1)
    assert sync_once(store, url).installed == 2


def test_trigger_from_announcement_wakes_the_loop(tmp_path, content, signer, make_store, serve):
    pub = _publish_two(tmp_path, signer, content)
    url, _ = serve(pub)
    store = make_store()
    installed = threading.Event()
    syncer = Syncer(store, url, interval_s=3600, on_installed=lambda v: installed.set())
    stop = threading.Event()
    t = threading.Thread(target=syncer.run, args=(stop,), daemon=True)
    t.start()
    assert installed.wait(20)  # the first check runs at start
    installed.clear()
    # the announcement exactly as the server publishes it (announce.v1.json)
    from edgeface.mqtt.payloads import announce_payload

    def announced(version: int) -> bytes:
        return json.dumps(announce_payload(gallery_version=version, url=url, model_id="m")).encode()

    assert syncer.trigger(announced(1)) is False  # not newer: nothing to do
    content.change(1, 1).publish(pub, signer)
    assert syncer.trigger(b"not json") is True  # a malformed announcement still triggers a (verified) check
    assert installed.wait(20)
    assert store.installed_version() == 2
    assert syncer.trigger(announced(2)) is False
    assert syncer.trigger(announced(3)) is True
    stop.set()
    t.join(10)
