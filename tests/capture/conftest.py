"""Fixtures for the capture-source tests: stand-ins for optional hardware modules."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import pytest


@pytest.fixture
def fake_modules(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, Any], None]:
    """Install a stand-in module under a name (picamera2, libcamera, gpiozero) for one test."""

    def install(name: str, module: Any) -> None:
        monkeypatch.setitem(sys.modules, name, module)

    return install
