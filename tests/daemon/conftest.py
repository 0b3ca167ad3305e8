"""Fixtures for the daemon tests: a signed test gallery, unit configurations in a temp folder, LFW people."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import REPO, build_gallery, install_gallery, toml_text, unit_sections

from edgeface.config import Config, load_config


@pytest.fixture(scope="session")
def test_gallery(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A gallery of Barack Obama and Joe Biden (tests/images), enrolled with the current models and signed
    with a test key: (bundle dir, public key). Built here rather than taken from the demo sample, so these
    tests follow model changes; and a unit must not trust the demo key, so the tests do not either."""
    images = REPO / "tests" / "images"
    return build_gallery(
        tmp_path_factory.mktemp("test-gallery"),
        [("barack-obama", "Barack Obama", images / "obama.jpg"), ("joe-biden", "Joe Biden", images / "biden.jpg")],
    )


@pytest.fixture
def make_unit(tmp_path: Path, test_gallery: tuple[Path, Path]) -> Callable[..., tuple[Config, Path]]:
    """``make_unit(**sections)`` -> (validated Config, its TOML file); inbox created, test gallery installed."""

    def make(*, with_gallery: bool = True, **sections: dict[str, Any]) -> tuple[Config, Path]:
        (tmp_path / "inbox").mkdir(exist_ok=True)
        sec = unit_sections(tmp_path, **sections)
        if with_gallery:
            sec["gallery"].setdefault("trusted_keys", [str(test_gallery[1])])
        path = tmp_path / "unit.toml"
        path.write_text(toml_text(sec))
        config = load_config(path, env={})
        if with_gallery:
            install_gallery(config, test_gallery[0])
        return config, path

    return make


@pytest.fixture(scope="session")
def lfw_people(lfw_root: Path) -> dict[str, list[Path]]:
    from edgeface.evaluation.lfw import people

    return people(lfw_root)
