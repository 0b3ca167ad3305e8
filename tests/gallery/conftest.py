"""Fixtures for gallery tests: keys, realistic vectors, device stores, a real HTTP server on loopback."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gallery_helpers import EMBEDDER, Content, Recorder

from edgeface.gallery.crypto import DeviceKey
from edgeface.gallery.manifest import EmbedderRef
from edgeface.gallery.serve import GalleryFiles, make_gallery_server
from edgeface.gallery.store import GalleryStore


@pytest.fixture(scope="session")
def signer() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="session")
def content() -> Content:
    return Content(600)


@pytest.fixture
def device_key() -> DeviceKey:
    return DeviceKey(secrets.token_bytes(32), "test")


@pytest.fixture
def make_store(signer: Ed25519PrivateKey, tmp_path: Path) -> Callable[..., GalleryStore]:
    def make(key: DeviceKey | None = None, name: str = "device", embedder: EmbedderRef = EMBEDDER) -> GalleryStore:
        return GalleryStore(tmp_path / name, trusted=[signer.public_key()], key=key, embedder_sha256=embedder.sha256)

    return make


@pytest.fixture
def serve() -> Iterator[Callable[[Path], tuple[str, Recorder]]]:
    servers = []

    def start(root: Path) -> tuple[str, Recorder]:
        rec = Recorder(GalleryFiles(root))
        srv = make_gallery_server(root, port=0, app=rec)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_port}/", rec

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()
