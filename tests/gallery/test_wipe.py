"""`edgeface gallery wipe --yes` tells the truth: the key is destroyed, or the command says what is left and
exits 1. Real key files, a real installed (encrypted) gallery, the real command in a child process."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from gallery_helpers import EMBEDDER, Content

from edgeface.gallery.crypto import destroy_device_keys, generate_key_file, load_device_key
from edgeface.gallery.store import GalleryStore
from edgeface.gallery.sync import sync_once

EDGEFACE = [sys.executable, "-c", "import sys; from edgeface.cli import main; sys.exit(main(sys.argv[1:]))"]


@pytest.fixture
def unit(tmp_path, signer, serve):  # type: ignore[no-untyped-def]
    """A unit with a key file and an encrypted gallery installed under it; env for the CLI."""
    key_file = tmp_path / "dev.key"
    generate_key_file(key_file)
    gallery = tmp_path / "unit"
    pub = tmp_path / "pub"
    Content(100, seed=21).publish(pub, signer)
    url, _ = serve(pub)
    store = GalleryStore(
        gallery,
        trusted=[signer.public_key()],
        key=load_device_key(key_file, environ={}),
        embedder_sha256=EMBEDDER.sha256,
    )
    assert sync_once(store, url).installed == 1
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFACE_") and k != "CREDENTIALS_DIRECTORY"}
    env.update(EDGEFACE_GALLERY__DIR=str(gallery), EDGEFACE_GALLERY__KEY_FILE=str(key_file))
    return env, key_file, gallery


def _wipe(env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EDGEFACE, "gallery", "wipe", "--yes", *extra], capture_output=True, text=True, env=env, timeout=120
    )


def _ciphertext_left(gallery: Path) -> list[Path]:
    return [p for p in gallery.rglob("*") if p.is_file()]


def test_wipe_destroys_the_key_file_and_the_data(unit):
    env, key_file, gallery = unit
    p = _wipe(env, "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    out = json.loads(p.stdout)
    assert out["complete"] and out["key_destroyed"] and out["keys_destroyed"] == [str(key_file)]
    assert out["keys_remaining"] == [] and out["data_left"] == []
    assert not key_file.exists() and _ciphertext_left(gallery) == []


def test_wipe_destroys_a_key_file_that_fails_its_permission_check(unit):
    env, key_file, gallery = unit
    os.chmod(key_file, 0o644)  # load_device_key refuses it ("chmod 600") ... but it is still the key
    p = _wipe(env)
    assert p.returncode == 0, p.stdout + p.stderr
    assert not key_file.exists(), "a bad-permission key must be destroyed too"
    assert f"key destroyed: {key_file}" in p.stdout and "INCOMPLETE" not in p.stdout
    assert _ciphertext_left(gallery) == []


def test_wipe_with_the_key_in_the_environment_says_so_and_exits_1(unit):
    env, key_file, gallery = unit
    env = {**env, "EDGEFACE_GALLERY_KEY": secrets.token_hex(32)}
    p = _wipe(env)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "KEY NOT DESTROYED" in p.stdout and "$EDGEFACE_GALLERY_KEY" in p.stdout
    assert "unset it" in p.stdout and "WIPE INCOMPLETE" in p.stdout  # what to do
    assert not key_file.exists() and _ciphertext_left(gallery) == []  # what could be destroyed, was
    pj = _wipe(env, "--json")
    assert pj.returncode == 1 and "WIPE INCOMPLETE" in pj.stderr
    out = json.loads(pj.stdout)
    assert not out["complete"] and not out["key_destroyed"] and out["keys_remaining"]


def test_wipe_with_a_systemd_credential_says_what_is_left(unit, tmp_path):
    env, key_file, gallery = unit
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "edgeface-gallery-key").write_bytes(secrets.token_bytes(32))
    p = _wipe({**env, "CREDENTIALS_DIRECTORY": str(creds)})
    assert p.returncode == 1, p.stdout + p.stderr
    assert not (creds / "edgeface-gallery-key").exists()  # the decrypted copy is gone ...
    assert "/etc/credstore.encrypted/edgeface-gallery-key" in p.stdout  # ... the sealed source must go too


def test_wipe_of_a_key_path_that_is_not_a_regular_file_exits_1(unit, tmp_path):
    env, key_file, gallery = unit
    elsewhere = tmp_path / "real.key"
    key_file.rename(elsewhere)
    key_file.symlink_to(elsewhere)
    p = _wipe(env)
    assert p.returncode == 1 and "not a regular file" in p.stdout, p.stdout + p.stderr
    assert elsewhere.exists()  # a link is never followed to destroy whatever it points at


def test_wipe_with_nothing_to_destroy_is_complete_and_says_so(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFACE_") and k != "CREDENTIALS_DIRECTORY"}
    env.update(EDGEFACE_GALLERY__DIR=str(tmp_path / "unit"), EDGEFACE_GALLERY__KEY_FILE=str(tmp_path / "none.key"))
    p = _wipe(env)
    assert p.returncode == 0 and "no device key found" in p.stdout, p.stdout + p.stderr


def test_destroy_device_keys_reports_every_source(tmp_path):
    kf = tmp_path / "k"
    generate_key_file(kf)
    os.chmod(kf, 0o400)  # read-only to its owner: still destroyed
    out = destroy_device_keys(kf, "K", "c", environ={"K": "ab" * 32})
    assert out.destroyed == [str(kf)] and not kf.exists()
    assert not out.complete and len(out.remaining) == 1 and "$K" in out.remaining[0]
    assert destroy_device_keys(kf, "K", "c", environ={}).complete  # nothing left anywhere
