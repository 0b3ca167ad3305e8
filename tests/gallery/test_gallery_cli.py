"""The gallery commands as an operator runs them: real processes, a real server, JSON output, exit codes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from gallery_helpers import Content, EmbedderRef

from edgeface.gallery import signing

CARD = """card_version = 1
id = "fake-embedder"
task = "embedder"
name = "a card for tests (the .tflite is never loaded)"
file = "fake.tflite"
sha256 = "{sha}"
[licence]
spdx = "CC0-1.0"
[input]
width = 150
height = 150
colour = "RGB"
scale = 1.0
offset = 0.0
resize = "none"
[embedding]
output = "out"
dim = 128
metric = "cosine"
[alignment.template]
right_eye = [50.0, 60.0]
left_eye = [100.0, 60.0]
[thresholds]
cosine = 0.8
"""


EDGEFACE = [sys.executable, "-c", "import sys; from edgeface.cli import main; sys.exit(main(sys.argv[1:]))"]


def _run(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([*EDGEFACE, *args], capture_output=True, text=True, env=env, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError(f"edgeface {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


@pytest.fixture
def unit(tmp_path):  # type: ignore[no-untyped-def]
    sha = "ef" * 32
    models = tmp_path / "models"
    models.mkdir()
    (models / "fake-embedder.toml").write_text(CARD.format(sha=sha))
    env = {
        **os.environ,
        "EDGEFACE_MODELS__DIR": str(models),
        "EDGEFACE_MODELS__EMBEDDER": "fake-embedder",
        "EDGEFACE_GALLERY__DIR": str(tmp_path / "unit"),
        "EDGEFACE_GALLERY__KEY_FILE": str(tmp_path / "dev.key"),
        "EDGEFACE_GALLERY__TRUSTED_KEYS": f'["{tmp_path / "central.pub"}"]',
    }
    env.pop("EDGEFACE_GALLERY_KEY", None)
    env.pop("CREDENTIALS_DIRECTORY", None)
    return env, EmbedderRef("fake-embedder", sha, 128)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_operator_workflow(tmp_path, unit):
    env, embedder = unit
    _run(
        "gallery",
        "keygen",
        "--signing-key",
        str(tmp_path / "central.pem"),
        "--public-key",
        str(tmp_path / "central.pub"),
        env=env,
    )
    _run("gallery", "keygen", "--device-key", str(tmp_path / "dev.key"), env=env)
    assert _run("gallery", "keygen", "--device-key", str(tmp_path / "dev.key"), env=env, check=False).returncode == 2
    content = Content(200, seed=3)
    pub = tmp_path / "pub"
    content.publish(pub, signing.load_private_key(tmp_path / "central.pem"), embedder=embedder)

    out = json.loads(_run("gallery", "verify", str(pub), "--json", env=env).stdout)
    assert out["ok"] and out["version"] == 1
    info = json.loads(_run("gallery", "inspect", str(pub), "--json", env=env).stdout)
    assert info["count"] == len(content.vectors) and info["embedder"]["sha256"] == embedder.sha256
    text = _run("gallery", "inspect", str(pub), env=env).stdout
    assert f"{info['count']} images" in text and "index " in text
    assert "{" not in text and "'" not in text  # for people: no Python dict or repr

    port = _free_port()
    server = subprocess.Popen(
        [*EDGEFACE, "gallery", "serve", str(pub), "--port", str(port)], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        assert "serving" in server.stderr.readline()
        url = f"http://127.0.0.1:{port}/"
        r = json.loads(_run("gallery", "sync", "--url", url, "--json", env=env).stdout)
        assert (r["status"], r["installed"]) == ("updated", 1)
        r = json.loads(_run("gallery", "sync", "--url", url, "--json", env=env).stdout)
        assert r["status"] == "not_modified"
        installed = json.loads(_run("gallery", "inspect", "--json", env=env).stdout)
        assert installed["gallery_version"] == 1 and installed["sync"]["last_result"]["status"] == "not_modified"
        # a tampered publication: sync exits 1 with the reason, the unit keeps version 1
        content.change(1, 1).publish(
            pub, signing.load_private_key(tmp_path / "central.pem"), embedder=embedder, delta_depth=0
        )
        victim = pub / "v0000000002" / "labels.npy"
        victim.write_bytes(victim.read_bytes()[:-4] + b"\0\0\0\0")
        p = _run("gallery", "sync", "--url", url, "--json", env=env, check=False)
        assert p.returncode == 1 and json.loads(p.stdout)["reason"] == "hash_mismatch"
        p = _run("gallery", "verify", str(pub), "--json", env=env, check=False)
        assert p.returncode == 1 and json.loads(p.stdout)["reason"] == "hash_mismatch"
    finally:
        server.terminate()
        server.wait(10)

    assert _run("gallery", "wipe", env=env, check=False).returncode == 2  # needs --yes
    w = json.loads(_run("gallery", "wipe", "--yes", "--json", env=env).stdout)
    assert w["key_destroyed"] and not (tmp_path / "dev.key").exists()
    assert not any((tmp_path / "unit").iterdir())


def test_encrypted_unit_without_key_is_a_clear_error(tmp_path, unit):
    env, _ = unit
    signing.generate_keypair(tmp_path / "central.pem", tmp_path / "central.pub")
    p = _run("gallery", "sync", "--url", "http://127.0.0.1:9/", env=env, check=False)
    assert p.returncode == 1 and "keygen --device-key" in p.stderr  # says what to do
    _run("gallery", "keygen", "--device-key", str(tmp_path / "dev.key"), env=env)
    env = {**env, "EDGEFACE_GALLERY__TRUSTED_KEYS": "[]"}
    p = _run("gallery", "sync", "--url", "http://127.0.0.1:9/", env=env, check=False)
    assert p.returncode == 1 and "gallery.trusted_keys" in p.stderr
