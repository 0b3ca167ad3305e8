"""latest.json is signed and expires: a mirror serving an old pointer cannot keep a unit on an old gallery
unnoticed. Real publish folders, a real HTTP server on loopback, the real `edgeface gallery refresh` and
`edgeface status` commands; time is moved by signing pointers in the past, never by waiting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gallery_helpers import Content

from edgeface.config import load_config
from edgeface.daemon.status import gallery_info
from edgeface.gallery import signing
from edgeface.gallery.publish import (
    POINTER,
    Pointer,
    parse_utc,
    publish_lock,
    read_pointer,
    refresh_pointer_if_due,
    verify_pointer,
    write_pointer,
)
from edgeface.gallery.sync import sync_once

EDGEFACE = [sys.executable, "-c", "import sys; from edgeface.cli import main; sys.exit(main(sys.argv[1:]))"]
HOUR = 3600.0


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFACE_")}
    return subprocess.run([*EDGEFACE, *args], capture_output=True, text=True, env={**base, **(env or {})}, timeout=120)


@pytest.fixture
def central(tmp_path):  # type: ignore[no-untyped-def]
    """The central signing key on disk (for the CLI) and loaded (for publishing in-process)."""
    signing.generate_keypair(tmp_path / "central.pem", tmp_path / "central.pub")
    return tmp_path / "central.pem", signing.load_private_key(tmp_path / "central.pem")


@pytest.fixture
def published(tmp_path, central, serve, make_store):  # type: ignore[no-untyped-def]
    """Version 1 published and installed on a unit that trusts the central key."""
    from edgeface.gallery.store import GalleryStore

    _, key = central
    content = Content(150, seed=31)
    pub = tmp_path / "pub"
    content.publish(pub, key)
    url, rec = serve(pub)
    base = make_store()
    store = GalleryStore(base.root, trusted=[key.public_key()], embedder_sha256=base.embedder_sha256)
    r = sync_once(store, url)
    assert (r.status, r.installed) == ("updated", 1), r
    return store, content, pub, url, rec, key


def _answers(store, content: Content, version: int) -> None:  # type: ignore[no-untyped-def]
    g = store.open()
    assert g is not None and g.version == version
    row = len(content.vectors) - 1
    assert g.identify(content.vectors[row], top_k=1).match.identity == content.entries[row]["identity"]
    g.close()


def _expire(pub: Path, key, ago: float = 2 * HOUR, ttl: float = HOUR) -> Pointer:  # type: ignore[no-untyped-def]
    """Re-sign the current pointer as a mirror would have kept it: signed ``ago`` seconds ago for ``ttl``."""
    ptr = read_pointer(pub)
    assert ptr is not None
    return write_pointer(pub, ptr, key, ttl, now=time.time() - ago)


def test_published_pointer_is_signed_with_an_expiry(published):
    store, _, pub, _, _, key = published
    doc = json.loads((pub / POINTER).read_text())
    assert {"signature", "signed_at", "expires_at"} <= set(doc)
    ttl = parse_utc(doc["expires_at"]) - parse_utc(doc["signed_at"])
    assert ttl == 3 * 86400  # gallery.pointer_ttl_s's default
    ptr = verify_pointer((pub / POINTER).read_bytes(), [key.public_key()], "test")
    assert ptr.version == 1 and ptr.expires_at == doc["expires_at"]


def test_expired_pointer_is_refused_and_the_old_gallery_stays(published):
    store, content, pub, url, _, key = published
    newer = content.change(2, 2)
    newer.publish(pub, key)  # version 2 is there ...
    _expire(pub, key)  # ... but the pointer a mirror serves expired an hour ago
    r = sync_once(store, url)
    assert (r.status, r.reason, r.installed) == ("refused", "expired", 1), r
    assert "expired at" in r.message and "edgeface gallery refresh" in r.message  # what, and what to do
    _answers(store, content, 1)  # the installed gallery keeps answering


def test_refresh_extends_the_pointer_and_sync_goes_on(published, central, tmp_path):
    store, content, pub, url, _, key = published
    newer = content.change(2, 2)
    newer.publish(pub, key)
    old = _expire(pub, key)
    assert sync_once(store, url).reason == "expired"
    p = _run("gallery", "verify", str(pub), "--trusted-key", str(tmp_path / "central.pub"), "--json")
    assert p.returncode == 1 and json.loads(p.stdout)["reason"] == "expired"  # the operator sees it too

    p = _run("gallery", "refresh", "--publish", str(pub), "--signing-key", str(central[0]), "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    out = json.loads(p.stdout)
    assert out["version"] == 2 and parse_utc(out["expires_at"]) > time.time() + 2 * 86400
    fresh = read_pointer(pub)
    assert (fresh.version, fresh.bundle, fresh.deltas) == (old.version, old.bundle, old.deltas)  # only the times
    r = sync_once(store, url)
    assert (r.status, r.installed) == ("updated", 2), r
    _answers(store, newer, 2)
    p = _run("gallery", "verify", str(pub), "--trusted-key", str(tmp_path / "central.pub"), "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["pointer_expires_at"] == out["expires_at"], p.stdout


def test_refresh_of_an_empty_folder_says_what_to_do(tmp_path, central):
    (tmp_path / "empty").mkdir()
    p = _run("gallery", "refresh", "--publish", str(tmp_path / "empty"), "--signing-key", str(central[0]))
    assert p.returncode == 1 and "gallery build" in p.stderr, p.stdout + p.stderr


def test_tampering_with_expires_at_breaks_the_signature(published):
    store, content, pub, url, _, key = published
    content.change(2, 2).publish(pub, key)
    _expire(pub, key)
    doc = json.loads((pub / POINTER).read_text())
    doc["expires_at"] = "2099-01-01T00:00:00Z"  # a mirror "extends" the old pointer itself
    (pub / POINTER).write_text(json.dumps(doc))
    r = sync_once(store, url)
    assert (r.status, r.reason, r.installed) == ("refused", "bad_signature", 1), r
    _answers(store, content, 1)


def test_unsigned_pointer_of_an_old_publisher_is_refused_with_the_fix(published):
    store, content, pub, url, _, key = published
    content.change(2, 2).publish(pub, key)
    ptr = read_pointer(pub)
    (pub / POINTER).write_bytes(Pointer(ptr.version, ptr.bundle, ptr.deltas).to_bytes())  # no signature, no expiry
    r = sync_once(store, url)
    assert (r.status, r.reason, r.installed) == ("refused", "unsigned", 1), r
    assert "edgeface gallery refresh" in r.message
    _answers(store, content, 1)


def test_an_unchanged_pointer_past_its_expiry_is_refused_too(published):
    """A mirror answering 304 forever: the unit judges the expiry of the pointer it verified before."""
    store, content, pub, url, rec, key = published
    state = json.loads((store.root / "sync-state.json").read_text())
    later = state["fresh_until"] + 1
    r = sync_once(store, url, now=later)
    assert rec.requests[-1]["if_none_match"]  # the server did answer 304 ...
    assert (r.status, r.reason, r.installed) == ("refused", "expired", 1), r  # ... and it is not enough
    assert sync_once(store, url).status == "not_modified"  # today, the same 304 is fine


def test_server_side_refresh_when_half_the_lifetime_is_gone(tmp_path, central):
    _, key = central
    pub = tmp_path / "pub"
    Content(50, seed=32).publish(pub, key, pointer_ttl_s=4 * HOUR)
    signed = read_pointer(pub)
    loads: list[int] = []

    def load():  # type: ignore[no-untyped-def]
        loads.append(1)
        return key

    now = time.time()
    assert refresh_pointer_if_due(pub, 4 * HOUR, load, now=now + HOUR) is None and loads == []  # not due
    with publish_lock(pub):  # a publication in progress: it writes a fresh pointer itself
        assert refresh_pointer_if_due(pub, 4 * HOUR, load, now=now + 3 * HOUR) is None
    new = refresh_pointer_if_due(pub, 4 * HOUR, load, now=now + 3 * HOUR)
    assert new is not None and loads == [1] and new.version == signed.version
    assert parse_utc(new.expires_at) == pytest.approx(now + 7 * HOUR, abs=2)
    verify_pointer((pub / POINTER).read_bytes(), [key.public_key()], "test", now=now + 6 * HOUR)


def _unit_config(tmp_path: Path, store_root: Path, url: str) -> Path:
    cfg = tmp_path / "unit.toml"
    cfg.write_text(
        f'[gallery]\ndir = "{store_root}"\nsync_url = "{url}"\n'
        f'[run]\nstate_dir = "{tmp_path / "state"}"\n[outbox]\npath = "{tmp_path / "outbox.sqlite3"}"\n'
        f'[retention]\ndir = "{tmp_path / "media"}"\n'
    )
    return cfg


def test_status_shows_the_gallery_stale_past_the_pointer_expiry(tmp_path, published):
    store, content, pub, url, _, key = published
    cfg_path = _unit_config(tmp_path, store.root, url)
    config = load_config(cfg_path, env={})
    info = gallery_info(config)
    assert info["stale"] is False and info["fresh_until"]

    # the unit last verified a pointer two hours ago (signed then, valid one hour); nothing since
    write_pointer(pub, read_pointer(pub), key, HOUR, now=time.time() - 2 * HOUR)
    assert sync_once(store, url, now=time.time() - 2 * HOUR).status == "up_to_date"
    info = gallery_info(config)
    assert info["stale"] is True and info["installed"] and info["version"] == 1

    p = _run("--config", str(cfg_path), "status", "--json")
    assert p.returncode == 3, p.stdout + p.stderr  # no daemon running
    g = json.loads(p.stdout)["gallery"]
    assert g["stale"] is True and g["fresh_until"] == info["fresh_until"]
    p = _run("--config", str(cfg_path), "status")
    assert "STALE" in p.stdout and "edgeface gallery refresh" in p.stdout and "still answers" in p.stdout

    # the publisher re-signs, the unit syncs: fresh again
    write_pointer(pub, read_pointer(pub), key, HOUR)
    assert sync_once(store, url).status == "up_to_date"
    assert gallery_info(config)["stale"] is False
    _answers(store, content, 1)


def test_a_304_nobody_asked_for_is_a_failure_not_a_crash(tmp_path, make_store):
    import threading

    from edgeface.gallery.serve import make_gallery_server

    def always_304(environ, start_response):  # type: ignore[no-untyped-def]
        start_response("304 Not Modified", [])
        return []

    srv = make_gallery_server(tmp_path, port=0, app=always_304)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        r = sync_once(make_store(), f"http://127.0.0.1:{srv.server_port}/")
    finally:
        srv.shutdown()
        srv.server_close()
    assert (r.status, r.reason, r.installed) == ("failed", "network", 0) and "not conditional" in r.message
