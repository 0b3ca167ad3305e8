"""The python and packages lines read the installed edgeface's own metadata: every runtime requirement that
applies here is installed at its floor; a missing or too old one fails; without `packaging` (not a
dependency) a marker that cannot be evaluated never turns into a false failure."""

from __future__ import annotations

import sys

import pytest

from edgeface.doctor import versions


def test_this_environment_passes_and_names_the_runtime() -> None:
    assert versions.python_check().status == "ok"
    c = versions.packages_check()
    assert c.status == "ok", c
    for name in ("numpy", "ai-edge-litert", "opencv-python-headless", "annoy", "paho-mqtt", "cryptography"):
        assert name in c.detail["installed"]
    assert "pytest" not in c.detail["installed"]  # an extra's requirement is not the runtime's


def test_a_missing_or_old_requirement_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    reqs = [
        "numpy>=999.0",
        "surely-not-installed-pkg>=1.0",
        "tomli>=2.0; python_version < '3.0'",
        'pytest; extra == "test"',
    ]
    monkeypatch.setattr(versions.metadata, "requires", lambda dist: reqs)
    c = versions.packages_check()
    assert c.status == "fail"
    assert any(p.startswith("numpy ") and "older than >=999.0" in p for p in c.detail["problems"])
    assert "surely-not-installed-pkg missing (wants >=1.0)" in c.detail["problems"]
    assert len(c.detail["problems"]) == 2  # the marker and the extra exclude the other two


def test_without_packaging_markers_are_not_guessed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "packaging.markers", None)  # import raises ImportError
    assert versions._marker_applies("python_version < '3.11'") is None
    assert versions._marker_applies('extra == "test"') is False and versions._marker_applies("") is True
    monkeypatch.setattr(
        versions.metadata, "requires", lambda dist: ["surely-not-installed-pkg; python_version < '3.0'"]
    )
    assert versions.packages_check().status == "ok"
