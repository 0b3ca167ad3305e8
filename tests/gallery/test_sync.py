"""Sync end to end over real HTTP on loopback against the gallery server: every refusal leaves the old
gallery answering; interrupted downloads resume with Range; unchanged publications cost one 304."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gallery_helpers import OTHER_EMBEDDER, Content

from edgeface.gallery.publish import POINTER, Pointer, verify_pointer, write_pointer
from edgeface.gallery.sync import Syncer, SyncResult, _locations, sync_once


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


def test_a_failed_delta_keeps_the_interrupted_full_download_of_that_version(tmp_path, signer, make_store, serve):
    """The delta is staged apart from the full bundle of the same version: when it fails, the fallback
    resumes the full download that was interrupted before instead of fetching it all again."""
    base = Content(300, seed=6)
    pub = tmp_path / "pub"
    base.publish(pub, signer)
    url, rec = serve(pub)
    store = make_store()
    sync_once(store, url)
    changed = base.change(3, 3)
    m = changed.publish(pub, signer).manifest
    last = max(m.files)
    rec.truncate[last] = 1000  # the full download of version 2 drops in its last file
    r = sync_once(store, url, use_deltas=False)
    assert (r.status, r.via, r.installed) == ("failed", None, 1), r
    done = sorted(set(m.files) - {last})
    assert all((store.staging(2) / name).exists() for name in done)  # these came whole
    ops = next((pub / "deltas").glob("1-2")) / "add_vectors.npy"
    ops.write_bytes(ops.read_bytes()[:-1] + b"\0")  # the delta fails its hash check: full bundle instead
    seen = len(rec.requests)
    r = sync_once(store, url)
    assert (r.status, r.via, r.installed) == ("updated", "full", 2), r
    again = [q["path"].rsplit("/", 1)[-1] for q in rec.requests[seen:] if "/deltas/" not in q["path"]]
    assert last in again and not set(done) & set(again), again  # only the cut file was fetched again
    assert r.downloaded_bytes < m.total_bytes  # not the whole bundle again
    _answers(store, changed, 2)


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


# -- what a sync reports and records (the operator reads sync-state.json through `edgeface status`) --------


def _state(store) -> dict:  # type: ignore[no-untyped-def]
    return json.loads((store.root / "sync-state.json").read_text())


def test_each_sync_says_what_it_did_and_keeps_it_in_the_state_file(tmp_path, content, signer, make_store, serve):
    pub = _publish_two(tmp_path, signer, content)
    url, _ = serve(pub)
    store = make_store()
    (store.root / "sync-state.json").write_text("{not json")  # a damaged state file is started afresh
    now = time.time() + 60  # the clock pointer expiry is judged by, as given
    t0 = time.time()
    r = sync_once(store, url, now=now)
    assert (r.status, r.installed, r.previous, r.offered, r.via, r.reason) == ("updated", 1, 0, 1, "full", None)
    assert r.downloaded_bytes >= content.publish(tmp_path / "again", signer).manifest.total_bytes
    s = _state(store)
    assert s["last_result"] == r.to_dict() and r.to_dict()["status"] == "updated"
    assert t0 <= s["last_check"] <= time.time() and t0 <= s["last_success"] <= s["last_check"] + 1
    ptr = verify_pointer((pub / POINTER).read_bytes(), [signer.public_key()], "p", now)
    assert s["fresh_until"] == ptr.expires_ts
    assert s["pointer"] == {"version": 1, "signed_at": ptr.signed_at, "expires_at": ptr.expires_at, "verified_at": now}
    assert s["pointer_etag"] == '"' + hashlib.sha256((pub / POINTER).read_bytes()).hexdigest() + '"'
    assert not (store.root / "sync-state.json.tmp").exists()
    r = sync_once(store, url)
    assert (r.status, r.installed, r.previous, r.offered, r.message) == (
        "not_modified",
        1,
        1,
        None,
        "no new publication",
    )
    # without the kept ETag the pointer is fetched and verified again: same version, up to date
    etag = s.pop("pointer_etag")
    (store.root / "sync-state.json").write_text(json.dumps(s))
    r = sync_once(store, url)
    assert (r.status, r.installed, r.previous, r.offered, r.via) == ("up_to_date", 1, 1, 1, None)
    assert _state(store)["pointer_etag"] == etag
    # a refusal: recorded with its reason and message, last_success stays the last success's
    success = _state(store)["last_success"]
    content.change(2, 2).publish(pub, signer, delta_depth=0)
    r = sync_once(store, url, max_bytes=1000)
    assert (r.status, r.reason, r.installed, r.previous) == ("refused", "too_large", 1, 1)
    assert (
        r.message
        == f"gallery version 2 is {_manifest(pub, 2).total_bytes} bytes, more than gallery.sync_max_bytes = 1000"
    )
    s = _state(store)
    assert s["last_result"]["status"] == "refused" and s["last_result"]["reason"] == "too_large"
    assert s["last_success"] == success and s["last_check"] > success
    assert s["pointer"]["version"] == 1  # the installed gallery is not the newest: its freshness is not renewed
    # exactly at the limit is within it
    r = sync_once(store, url, max_bytes=_manifest(pub, 2).total_bytes)
    assert (r.status, r.installed, r.previous, r.offered) == ("updated", 2, 1, 2)


def _manifest(pub: Path, version: int):  # type: ignore[no-untyped-def]
    from edgeface.gallery.manifest import Manifest

    return Manifest.from_bytes((pub / f"v{version:010d}" / "manifest.json").read_bytes(), "m")


def test_an_unreachable_server_is_a_network_failure(tmp_path, content, signer, make_store):
    store = make_store()
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = sync_once(store, f"http://127.0.0.1:{port}/", timeout=5)
    assert (r.status, r.reason, r.installed, r.previous) == ("failed", "network", 0, 0)
    assert str(port) in r.message
    s = _state(store)
    assert s["last_result"]["status"] == "failed" and "last_success" not in s


def test_rollback_refusal_says_what_is_kept(tmp_path, content, signer, make_store, serve):
    pub = _publish_two(tmp_path, signer, content)
    content.change(1, 1).publish(pub, signer)
    url, _ = serve(pub)
    store = make_store()
    sync_once(store, url)
    write_pointer(pub, Pointer(1, "v0000000001/", {}), signer, 3600)
    r = sync_once(store, url)
    assert r.message == "the server offers version 1, older than the installed 2; keeping 2"


def test_where_a_unit_looks_for_its_galleries():
    assert _locations("http://h/g", None) == ["http://h/g"]
    assert _locations("http://h/g/", "m a/b", ("ref", "m a/b")) == [
        "http://h/g/m%20a%2Fb/",
        "http://h/g/ref/",
        "http://h/g/",
    ]
    assert _locations("http://h/g", "m") == ["http://h/g/m/", "http://h/g"]


def test_a_unit_falls_back_to_the_plain_folder_and_says_when_it_is_for_another_model(
    tmp_path, content, signer, make_store, serve
):
    pub = tmp_path / "pub"
    content.publish(pub, signer)
    url, rec = serve(pub)
    store = make_store()
    r = sync_once(store, url, embedder_id="test-embedder")
    assert (r.status, r.installed) == ("updated", 1)
    assert [q["path"] for q in rec.requests[:2]] == ["/test-embedder/" + POINTER, "/" + POINTER]
    other = tmp_path / "other"
    content.publish(other, signer, embedder=OTHER_EMBEDDER)
    url2, _ = serve(other)
    r = sync_once(make_store(name="d2"), url2, embedder_id="test-embedder")
    assert (r.status, r.reason) == ("refused", "embedder_mismatch")
    assert r.message.startswith(
        f"no gallery is published for embedder test-embedder (nothing at {url2.rstrip('/')}/test-embedder/"
        f"{POINTER}), and the one at {url2} is for another model ("
    )
    assert r.message.endswith("Add test-embedder to the server's server.embedders and publish")
    # without an embedder id the plain refusal stands
    r = sync_once(make_store(name="d3"), url2)
    assert (r.status, r.reason) == ("refused", "embedder_mismatch") and not r.message.startswith("no gallery")
    assert r.message.startswith(url2) and " was built with embedder other-embedder" in r.message  # where, and why


def test_a_different_build_of_the_same_version_in_staging_is_started_over(tmp_path, content, signer, make_store, serve):
    pub = tmp_path / "pub"
    m = content.publish(pub, signer).manifest
    url, rec = serve(pub)
    store = make_store()
    staging = store.staging(1)
    (staging / "manifest.json").write_bytes(b'{"an": "older build of version 1"}')
    (staging / "vectors.npy").write_bytes(b"stale")  # complete, but from that other build
    r = sync_once(store, url)
    assert (r.status, r.installed) == ("updated", 1), r
    # a resumed sync of the same build fetches only what it does not have yet
    content.change(2, 2).publish(pub, signer, delta_depth=0)
    rec.truncate["vectors.npy"] = 10  # sorted order: every other file is complete before it
    assert sync_once(store, url).status == "failed"
    first = len(rec.requests)
    assert sync_once(store, url).installed == 2
    got = [q["path"].rsplit("/", 1)[-1] for q in rec.requests[first:]]
    assert got.count("entries.ndjson") == 0 and got.count("vectors.npy") == 1, got
    assert m.gallery_version == 1


# -- the Syncer: what one round does, and how long the loop waits -------------------------------------


def test_syncer_passes_its_settings_to_every_sync(tmp_path, content, signer, make_store, serve):
    pub = tmp_path / "pub"
    content.publish(pub, signer)
    url, rec = serve(pub)
    r = Syncer(make_store(name="a"), url, max_bytes=1000).run_once()
    assert (r.status, r.reason) == ("refused", "too_large")
    token = {"Authorization": "Bearer device-token"}
    r = Syncer(make_store(name="b"), url, headers=token).run_once()
    assert (r.status, r.reason) == ("refused", "insecure_http"), r  # credentials over plain http: no
    r = Syncer(
        make_store(name="c"), url, headers=token, allow_insecure_http=True, embedder_id="test-embedder"
    ).run_once()
    assert (r.status, r.installed) == ("updated", 1)
    assert "/test-embedder/" + POINTER in [q["path"] for q in rec.requests]


def test_a_round_syncs_the_pending_gallery_too_and_reports_its_failure(tmp_path, make_store):
    store, pending = make_store(name="now"), make_store(name="next")
    installed: list[int] = []
    told: list[object] = []

    class Scripted(Syncer):
        def __init__(self, results: dict, **kw) -> None:  # type: ignore[no-untyped-def, type-arg]
            super().__init__(store, "http://unused/", embedder_id="model-a", on_installed=installed.append, **kw)
            self.results, self.calls = results, []  # type: ignore[var-annotated]

        def _sync(self, s, embedder_id):  # type: ignore[no-untyped-def]
            self.calls.append((s, embedder_id))
            return self.results[s]

    up, ok, failed = SyncResult("updated", 4, 3), SyncResult("up_to_date", 2, 2), SyncResult("failed", 0, 0)
    alone = Scripted({store: up})
    assert alone.run_once() is up and alone.calls == [(store, "model-a")] and installed == [4]
    assert alone.last is up and alone.last_pending is None
    both = Scripted({store: ok, pending: failed}, pending=pending, pending_embedder="model-b", on_pending=told.append)
    assert both.run_once() is failed  # the pending gallery's failure is what the loop backs off on
    assert both.calls == [(store, "model-a"), (pending, "model-b")] and told == [failed] and installed == [4]
    assert both.last is ok and both.last_pending is failed
    fine = Scripted({store: ok, pending: up}, pending=pending, pending_embedder="model-b")
    assert fine.run_once() is ok and installed == [4]  # installing the pending gallery is not a switch


def test_syncer_trigger_counts_the_pending_gallery(tmp_path, content, signer, make_store, serve):
    pub = tmp_path / "pub"
    content.publish(pub, signer)
    url, _ = serve(pub)
    store, pending = make_store(name="now"), make_store(name="next")
    sync_once(store, url)
    alone = Syncer(store, url)
    assert alone.trigger({"gallery_version": 1}) is False and not alone._wake.is_set()
    assert alone.trigger({"gallery_version": "2"}) is True and alone._wake.is_set()
    assert Syncer(store, url).trigger({"other": 1}) is True  # no version announced: check anyway
    assert Syncer(store, url).trigger(None) is True
    assert Syncer(store, url).trigger('{"gallery_version": 0}') is False
    both = Syncer(store, url, pending=pending)
    assert both.trigger({"gallery_version": 1}) is True  # the pending store has nothing yet


class _Clock:
    """A fake monotonic clock and wake event: waiting advances the clock instead of sleeping."""

    def __init__(self) -> None:
        self.t = 0.0
        self.flag = False
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.t

    def is_set(self) -> bool:
        return self.flag

    def set(self) -> None:
        self.flag = True

    def clear(self) -> None:
        self.flag = False

    def wait(self, timeout: float) -> bool:
        assert 0 < timeout <= 1.0, timeout  # short waits, so a stop or a trigger is noticed within a second
        self.waits.append(timeout)
        self.t += timeout
        return self.flag


def test_the_loop_backs_off_on_failure_and_wakes_on_a_trigger(make_store, monkeypatch):
    import edgeface.gallery.sync as sync_module

    clock = _Clock()
    jitter: list[tuple[float, float]] = []

    class FakeRandom:
        @staticmethod
        def uniform(a: float, b: float) -> float:
            jitter.append((a, b))
            return b  # the longest wait the jitter allows

    monkeypatch.setattr(sync_module, "time", clock)
    monkeypatch.setattr(sync_module, "random", FakeRandom)
    statuses = ["failed", "failed", "failed", "failed", "updated", "failed", "triggered", "up_to_date"]
    starts: list[float] = []
    stop = threading.Event()
    syncer = Syncer(make_store(), "http://unused/", interval_s=100)
    syncer._wake = clock  # type: ignore[assignment]

    def run_once() -> SyncResult:
        starts.append(clock.t)
        status = statuses.pop(0)
        if status == "triggered":  # an announcement arrives while this round runs
            syncer.trigger(None)
            status = "up_to_date"
        if not statuses:
            stop.set()
        return SyncResult(status, 1, 1)

    syncer.run_once = run_once  # type: ignore[method-assign]
    syncer.run(stop)
    gaps = [round(b - a, 6) for a, b in zip(starts, starts[1:], strict=False)]
    # failures wait 30 s, doubling up to the interval; a success waits the interval and resets the back-off;
    # each wait is stretched by the jitter (x1.1 here); a trigger during a round starts the next at once
    assert gaps == [33.0, 66.0, 110.0, 110.0, 110.0, 33.0, 0.0]
    assert set(jitter) == {(0.9, 1.1)} and len(jitter) == 8
    assert stop.is_set() and len(starts) == 8


def test_a_stopped_loop_does_not_sync(make_store):
    stop = threading.Event()
    stop.set()
    syncer = Syncer(make_store(), "http://127.0.0.1:9/")
    syncer.run(stop)
    assert syncer.last is None


def test_a_delta_from_another_base_is_refused_before_its_patch_is_downloaded(tmp_path, signer, make_store, serve):
    a, b = Content(200, seed=11), Content(200, seed=12)
    pub_a, pub_b = tmp_path / "a", tmp_path / "b"
    a.publish(pub_a, signer)
    b.publish(pub_b, signer)
    b.change(2, 2).publish(pub_b, signer)  # version 2 with a delta from *b's* version 1
    url_a, _ = serve(pub_a)
    url_b, rec = serve(pub_b)
    store = make_store()
    assert sync_once(store, url_a).installed == 1  # version 1, but a's build of it
    r = sync_once(store, url_b)
    assert (r.status, r.via, r.installed) == ("updated", "full", 2)
    fetched = [q["path"] for q in rec.requests]
    assert any(p.endswith("/delta.json") for p in fetched)  # the delta was looked at...
    patch = [
        p
        for p in fetched
        if "/deltas/" in p and not p.endswith(("/delta.json", "/delta.sig", "/manifest.json", "/manifest.sig"))
    ]
    assert patch == []  # ...and refused on its signed base, before any patch file was fetched


def test_a_delta_whose_rebuilt_index_differs_is_checked_and_noted(tmp_path, signer, make_store, serve, monkeypatch):
    """A unit's Annoy build may not reproduce the server's index bytes: the rebuilt index is self-checked
    against the exact search and recorded in local-index.json, so the install accepts it."""
    import edgeface.gallery.sync as sync_module
    from edgeface.gallery.bundle import INDEX, PROJECTION, VECTORS
    from edgeface.gallery.index import build_annoy
    from edgeface.gallery.manifest import FileEntry, sha256_file

    real_apply = sync_module.apply_delta

    def apply_on_another_build(base_vectors, base_entries, base_identities, patch, target, sink):  # type: ignore[no-untyped-def]
        files, _ = real_apply(base_vectors, base_entries, base_identities, patch, target, sink)
        out = sink.dir / INDEX  # rebuild it as another Annoy build would: same vectors, other trees
        build_annoy(np.load(sink.dir / VECTORS), out, 3, np.load(sink.dir / PROJECTION), seed=target.index["seed"] + 1)
        files[INDEX] = FileEntry(sha256_file(out), out.stat().st_size)
        assert files[INDEX] != target.files[INDEX]
        return files, True

    base = Content(300, seed=13)
    pub = tmp_path / "pub"
    base.publish(pub, signer)
    url, _ = serve(pub)
    store = make_store()  # plain files, so the rebuilt index can be written as is
    sync_once(store, url)
    changed = base.change(3, 3)
    changed.publish(pub, signer)
    monkeypatch.setattr(sync_module, "apply_delta", apply_on_another_build)
    r = sync_once(store, url)
    assert (r.status, r.via, r.installed) == ("updated", "delta", 2), r
    note = json.loads((store.current_dir() / "local-index.json").read_text())
    index = store.current_dir() / "index.ann"
    assert note == {"sha256": sha256_file(index), "size": index.stat().st_size}
    assert not (store.current_dir() / "delta").exists()  # the patch files are gone once applied
    _answers(store, changed, 2)


def test_a_server_that_never_answers_is_a_network_failure_not_a_hang(make_store):
    import socket

    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        syncer = Syncer(make_store(), url, timeout=0.5)  # gallery.sync_timeout_s reaches the request
        done = threading.Thread(target=syncer.run_once, daemon=True)
        done.start()
        done.join(15)  # 0.5 s per request configured; the 30 s default would still be waiting here
        assert not done.is_alive(), "the Syncer ignored its timeout and is still waiting for the silent server"
        r = syncer.last
        assert r is not None and (r.status, r.reason, r.installed) == ("failed", "network", 0), r
        r = sync_once(make_store(name="other"), url, timeout=0.5)
        assert (r.status, r.reason) == ("failed", "network"), r


def test_https_with_a_private_ca_is_trusted_only_through_the_configured_ca_file(tmp_path, content, signer, make_store):
    import ssl

    from edgeface.gallery.serve import make_gallery_server
    from edgeface.testing import certs

    pki = certs.write_pki(tmp_path / "pki", clients=())
    pub = tmp_path / "pub"
    content.publish(pub, signer)
    srv = make_gallery_server(pub, port=0)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki["server.crt"], pki["server.key"])
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"https://127.0.0.1:{srv.server_port}/"
        r = sync_once(make_store(name="untrusting"), url, timeout=10)
        assert (r.status, r.installed) == ("failed", 0), r  # the system's CAs do not know this one
        r = Syncer(make_store(name="syncer"), url, timeout=10, ca_file=pki["ca"]).run_once()
        assert (r.status, r.installed) == ("updated", 1), r  # gallery.sync_ca_file reaches the request
        r = sync_once(make_store(name="once"), url, timeout=10, ca_file=pki["ca"])
        assert (r.status, r.installed) == ("updated", 1), r
    finally:
        srv.shutdown()
        srv.server_close()
