"""Fixtures for the field-unit tests: unit configurations in a temp folder, photos to feed, stand-ins for
optional hardware modules, a real mosquitto on loopback."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from unit_helpers import toml_text, unit_sections

from edgeface.bench.broker import LocalBroker
from edgeface.config import Config, load_config
from edgeface.daemon import demo


@pytest.fixture(scope="session")
def test_gallery(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sample gallery's content (Obama, Biden) re-published under a test key: (bundle dir, public key).
    A unit must not trust the demo key, so the tests do not either."""
    import json

    import numpy as np

    from edgeface.gallery import signing
    from edgeface.gallery.manifest import Manifest
    from edgeface.gallery.publish import publish

    root = tmp_path_factory.mktemp("test-gallery")
    signing.generate_keypair(root / "central.pem", root / "central.pub")
    m = Manifest.from_bytes((demo.GALLERY / "manifest.json").read_bytes())
    lines = lambda name: [json.loads(x) for x in (demo.GALLERY / name).read_text().splitlines() if x]
    pub = publish(root / "publish", vectors=np.load(demo.GALLERY / "vectors.npy"), entries=lines("entries.ndjson"),
                  identities=lines("identities.ndjson"), embedder=m.embedder, thresholds=m.thresholds,
                  signer=signing.load_private_key(root / "central.pem"))
    return pub.dir, root / "central.pub"


def install_gallery(config: Config, bundle: Path) -> None:
    from edgeface.gallery.store import GalleryStore

    store = GalleryStore.from_config(config)
    staged = store.staging(1)
    for f in bundle.iterdir():
        shutil.copyfile(f, staged / f.name)
    store.install(staged)


@pytest.fixture
def make_unit(tmp_path: Path, test_gallery: tuple[Path, Path]) -> Callable[..., tuple[Config, Path]]:
    """``make_unit(**sections)`` -> (validated Config, its TOML file); inbox created, test gallery installed."""

    def make(*, gallery: bool = True, **sections: dict[str, Any]) -> tuple[Config, Path]:
        (tmp_path / "inbox").mkdir(exist_ok=True)
        sec = unit_sections(tmp_path, **sections)
        if gallery:
            sec["gallery"].setdefault("trusted_keys", [str(test_gallery[1])])
        path = tmp_path / "unit.toml"
        path.write_text(toml_text(sec))
        config = load_config(path, env={})
        if gallery:
            install_gallery(config, test_gallery[0])
        return config, path

    return make


@pytest.fixture(scope="session")
def lfw_people(lfw_root: Path) -> dict[str, list[Path]]:
    from edgeface.bench.lfw import people

    return people(lfw_root)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    b = LocalBroker.plain(tmp_path / "broker")
    b.start()
    yield b
    b.kill()


@pytest.fixture
def fake_modules(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, Any], None]:
    """Install a stand-in module under a name (picamera2, libcamera, gpiozero) for one test."""

    def install(name: str, module: Any) -> None:
        monkeypatch.setitem(sys.modules, name, module)

    return install
