"""Encryption at rest: round trip, wrong key, tampering and truncation refused, resume, key sources, wipe."""

from __future__ import annotations

import os
import secrets

import pytest

from edgeface.errors import GalleryKeyError
from edgeface.gallery.crypto import (
    CHUNK,
    DecryptError,
    EncryptedWriter,
    decrypt_chunks,
    generate_key_file,
    load_device_key,
)
from edgeface.gallery.sync import sync_once


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 17])
def test_round_trip(tmp_path, size):
    key, data = secrets.token_bytes(32), secrets.token_bytes(size)
    w = EncryptedWriter(tmp_path / "f", key, "vectors.npy")
    for i in range(0, size, 100_000):
        w.write(data[i : i + 100_000])
    entry = w.close()
    assert entry.size == size
    assert b"".join(decrypt_chunks(tmp_path / "f", key, "vectors.npy")) == data
    if size > 64:
        assert data[:64] not in (tmp_path / "f").read_bytes()


def _encrypted(tmp_path, size=2 * CHUNK + 5):  # type: ignore[no-untyped-def]
    key = secrets.token_bytes(32)
    w = EncryptedWriter(tmp_path / "f", key, "entries.ndjson")
    w.write(secrets.token_bytes(size))
    w.close()
    return key, tmp_path / "f"


def test_wrong_key_is_refused(tmp_path):
    _, path = _encrypted(tmp_path)
    with pytest.raises(DecryptError, match="does not decrypt"):
        b"".join(decrypt_chunks(path, secrets.token_bytes(32), "entries.ndjson"))


def test_tampering_truncation_and_renaming_are_detected(tmp_path):
    key, path = _encrypted(tmp_path)
    data = path.read_bytes()
    for bad in (data[:-1], data[:100] + bytes([data[100] ^ 1]) + data[101:]):
        path.write_bytes(bad)
        with pytest.raises(DecryptError):
            b"".join(decrypt_chunks(path, key, "entries.ndjson"))
    path.write_bytes(data)
    with pytest.raises(DecryptError):  # the file name is authenticated: no swapping files around
        b"".join(decrypt_chunks(path, key, "vectors.npy"))
    # dropping whole trailing chunks is a truncation too
    header = 8 + 16 + 4
    path.write_bytes(data[: header + 2 * (CHUNK + 16)])
    with pytest.raises(DecryptError):
        b"".join(decrypt_chunks(path, key, "entries.ndjson"))


def test_resume_keeps_complete_chunks(tmp_path):
    key, data = secrets.token_bytes(32), secrets.token_bytes(3 * CHUNK + 10)
    w = EncryptedWriter(tmp_path / "f", key, "x")
    w.write(data[: 2 * CHUNK + 500])
    w.abandon()  # the process stops mid-file
    w = EncryptedWriter(tmp_path / "f", key, "x", resume=True)
    assert w.size == 2 * CHUNK  # whole chunks survive; the rest is fetched again
    w.write(data[w.size :])
    entry = w.close()
    assert b"".join(decrypt_chunks(tmp_path / "f", key, "x")) == data
    import hashlib

    assert entry.sha256 == hashlib.sha256(data).hexdigest()


def test_key_sources(tmp_path, monkeypatch):
    kf = tmp_path / "device.key"
    generate_key_file(kf)
    assert kf.stat().st_mode & 0o077 == 0
    assert load_device_key(kf, environ={}).source == "file"
    os.chmod(kf, 0o644)
    with pytest.raises(GalleryKeyError, match="chmod 600"):
        load_device_key(kf, environ={})
    hexkey = secrets.token_hex(32)
    k = load_device_key(kf, environ={"EDGEFACE_GALLERY_KEY": hexkey})
    assert (k.source, k.key.hex()) == ("environment", hexkey) and hexkey not in repr(k)
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "edgeface-gallery-key").write_bytes(secrets.token_bytes(32))
    env = {"CREDENTIALS_DIRECTORY": str(creds), "EDGEFACE_GALLERY_KEY": hexkey}
    assert load_device_key(kf, environ=env).source == "systemd-credential"
    with pytest.raises(GalleryKeyError, match="64 hex digits"):
        load_device_key(None, environ={"EDGEFACE_GALLERY_KEY": "abc"})
    with pytest.raises(GalleryKeyError, match="no device key"):
        load_device_key(None, environ={})


def test_wrong_device_key_cannot_open_the_store(tmp_path, content, signer, make_store, serve, device_key):
    pub = tmp_path / "pub"
    content.publish(pub, signer)
    url, _ = serve(pub)
    store = make_store(device_key)
    assert sync_once(store, url).installed == 1
    from edgeface.gallery.crypto import DeviceKey

    other = make_store(DeviceKey(secrets.token_bytes(32), "test"))
    with pytest.raises(DecryptError):
        other.open()


def test_wipe_destroys_key_then_data(tmp_path, content, signer, make_store, serve):
    pub = tmp_path / "pub"
    content.publish(pub, signer)
    url, _ = serve(pub)
    kf = tmp_path / "device.key"
    generate_key_file(kf)
    key = load_device_key(kf, environ={})
    store = make_store(key)
    assert sync_once(store, url).installed == 1
    out = store.wipe()
    assert out["key_destroyed"] is True and not kf.exists()
    assert list(store.root.iterdir()) == []
    with pytest.raises(GalleryKeyError):
        load_device_key(kf, environ={})


def test_an_older_versions_file_under_the_same_key_is_refused(tmp_path, content, signer, make_store, serve, device_key):
    """Someone with the storage but not the key copies a file of an earlier installed version (same name,
    same device key: it decrypts and authenticates) into the current one: the decrypted content is checked
    against the signed manifest, so the mixed gallery is refused, not silently opened."""
    from edgeface.errors import BundleRejected
    from edgeface.gallery.bundle import ENTRIES

    pub = tmp_path / "pub"
    content.publish(pub, signer)
    url, _ = serve(pub)
    store = make_store(device_key)
    assert sync_once(store, url).installed == 1
    v1 = store.current_dir()
    assert v1 is not None
    old = (v1 / ENTRIES).read_bytes()
    content.change(3, 3).publish(pub, signer)
    assert sync_once(store, url).installed == 2
    v2 = store.current_dir()
    assert v2 is not None and v2 != v1
    assert (v2 / ENTRIES).read_bytes() != old
    (v2 / ENTRIES).write_bytes(old)
    assert b"".join(decrypt_chunks(v2 / ENTRIES, device_key.key, ENTRIES))  # still a valid file for this key
    with pytest.raises(BundleRejected) as e:
        store.open()
    assert e.value.reason == "hash_mismatch"
    assert ENTRIES in str(e.value) and "does not match the signed manifest" in str(e.value)
