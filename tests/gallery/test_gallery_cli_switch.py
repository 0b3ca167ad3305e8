"""The gallery commands and `edgeface status` while a unit is told to change its embedder (gallery/switch.py),
as an operator runs them: real processes, a real HTTP server with one folder per model.

The unit runs model A with A's gallery and is told to run B: `gallery inspect` shows A's gallery and the
switch; `gallery sync` keeps A's gallery current and fetches B's beside it (never reporting A's gallery as
the wrong model's); `edgeface status` says whether B's gallery is ready. The swap is left to the daemon's
next start: the installed gallery stays A's."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gallery_helpers import Content, EmbedderRef
from test_gallery_cli import CARD, _run

from edgeface.gallery import signing

A, B = "fake-a", "fake-b"


def _cards(models: Path) -> dict[str, EmbedderRef]:
    models.mkdir()
    refs = {}
    for ident, sha in ((A, "a1" * 32), (B, "b2" * 32)):
        (models / f"{ident}.toml").write_text(CARD.format(sha=sha).replace('id = "fake-embedder"', f'id = "{ident}"'))
        refs[ident] = EmbedderRef(ident, sha, 128)
    return refs


def _env(base: dict[str, str], embedder: str) -> dict[str, str]:
    return {**base, "EDGEFACE_MODELS__EMBEDDER": embedder}


def test_inspect_sync_and_status_during_a_pending_switch(
    tmp_path: Path, serve: Callable[[Path], tuple[str, Any]]
) -> None:
    models = tmp_path / "models"
    refs = _cards(models)
    env = {k: v for k, v in os.environ.items() if k not in ("EDGEFACE_GALLERY_KEY", "CREDENTIALS_DIRECTORY")}
    env |= {
        "EDGEFACE_MODELS__DIR": str(models),
        "EDGEFACE_GALLERY__DIR": str(tmp_path / "unit"),
        "EDGEFACE_GALLERY__KEY_FILE": str(tmp_path / "dev.key"),
        "EDGEFACE_GALLERY__TRUSTED_KEYS": f'["{tmp_path / "central.pub"}"]',
        "EDGEFACE_RUN__STATE_DIR": str(tmp_path / "state"),
    }
    signing.generate_keypair(tmp_path / "central.pem", tmp_path / "central.pub")
    (tmp_path / "dev.key").write_bytes(secrets.token_bytes(32))
    (tmp_path / "dev.key").chmod(0o600)
    signer = signing.load_private_key(tmp_path / "central.pem")
    pub = tmp_path / "pub"
    content = Content(60, seed=5)
    content.publish(pub / A, signer, embedder=refs[A], normalise=False)  # version 1, for A only
    url, _ = serve(pub)

    on_a = _env(env, A)
    r = json.loads(_run("gallery", "sync", "--url", url, "--json", env=on_a).stdout)
    assert (r["status"], r["installed"]) == ("updated", 1) and "switch" not in r
    assert "switch" not in json.loads(_run("gallery", "inspect", "--json", env=on_a).stdout)

    # told to run B, nothing published for B yet: inspect shows A's gallery and the switch waiting
    on_b = _env(env, B)
    info = json.loads(_run("gallery", "inspect", "--json", env=on_b).stdout)
    assert info["embedder"]["id"] == A and info["gallery_version"] == 1
    assert {k: info["switch"][k] for k in ("running", "desired", "pending", "ready")} == {
        "running": A,
        "desired": B,
        "pending": True,
        "ready": False,
    }
    text = _run("gallery", "inspect", env=on_b).stdout
    assert f"embedder switch pending: answering with {A} and this gallery; told to run {B}" in text

    # sync: A's gallery is up to date (not an embedder mismatch); B's is not published: exit 1, says so
    p = _run("gallery", "sync", "--url", url, "--json", env=on_b, check=False)
    r = json.loads(p.stdout)
    assert p.returncode == 1 and (r["status"], r["installed"]) == ("not_modified", 1)
    assert r["switch"]["result"]["status"] in ("failed", "refused") and not r["switch"]["ready"]
    status = json.loads(_run("status", "--json", env=on_b, check=False).stdout)["gallery"]
    assert status["version"] == 1 and status["switch"]["desired"] == B and not status["switch"]["ready"]
    assert "switch" not in json.loads(_run("status", "--json", env=on_a, check=False).stdout)["gallery"]

    # the server publishes version 2 for both models: A's gallery is updated, B's fetched beside it
    content.publish(pub / A, signer, embedder=refs[A], version=2, normalise=False)
    content.publish(pub / B, signer, embedder=refs[B], version=2, normalise=False)
    r = json.loads(_run("gallery", "sync", "--url", url, "--json", env=on_b).stdout)
    assert (r["status"], r["installed"]) == ("updated", 2)
    assert (r["switch"]["result"]["status"], r["switch"]["result"]["installed"]) == ("updated", 2)
    assert r["switch"]["ready"]
    info = json.loads(_run("gallery", "inspect", "--json", env=on_b).stdout)
    assert info["embedder"]["id"] == A and info["switch"]["ready"]  # no swap here: the daemon's next start does it
    assert "the daemon's next start switches both" in _run("gallery", "inspect", env=on_b).stdout
    status = json.loads(_run("status", "--json", env=on_b, check=False).stdout)["gallery"]
    assert status["embedder"] == A and status["switch"]["ready"]
    text = _run("status", env=on_b, check=False).stdout
    assert f"embedder switch pending: answering with {A}, told to run {B}; its gallery is verified" in text
