"""Fixtures shared by every test area. Areas keep their own fixtures in tests/<area>/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeface.evaluation.lfw import default_lfw_dir
from edgeface.testing.broker import LocalBroker

IMAGES = Path(__file__).parent / "images"


@pytest.fixture(scope="session")
def lfw_root() -> Path:
    """The LFW research set (../shared/data/lfw or $EDGEFACE_LFW). Tests need it: CI has it."""
    root = default_lfw_dir()
    if not (root / "images").is_dir():
        pytest.fail(f"LFW not found at {root}; set EDGEFACE_LFW to the folder with images/ and pairs.txt")
    return root


@pytest.fixture(scope="session")
def images_dir() -> Path:
    """Redistributable test photos (public-domain official portraits; see tests/images/PROVENANCE.md)."""
    return IMAGES


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """A plain (no TLS) persistent mosquitto on a free loopback port (the tests need mosquitto: CI installs it)."""
    b = LocalBroker.plain(tmp_path / "broker")
    b.start()
    yield b
    b.kill()
