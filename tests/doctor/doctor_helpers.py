"""Helpers for the doctor's tests (imported by conftest.py and the test modules): the unit's identities, a
configuration file from plain values, the real gallery sync, the [mqtt] section for the test broker, a video."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from click.testing import CliRunner

from edgeface.cli import cli
from edgeface.testing.broker import LocalBroker

UNIT = "unit-a"
PASSWORD_UNIT, PASSWORD = "unit-p", "correct horse"  # a unit on the password listener (8884)

Doctor = Callable[..., tuple[int, dict[str, Any]]]


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    """A TOML configuration file from plain values (strings, numbers, booleans, lists of strings)."""
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        for k, v in values.items():
            lines.append(f"{k} = {json.dumps(str(v) if isinstance(v, Path) else v)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def sync(sections: dict[str, dict[str, Any]], path: Path) -> None:
    """`edgeface gallery sync` on the unit: the real download, verification and install."""
    cfg = write_config(path, sections)
    r = CliRunner().invoke(cli, ["--config", str(cfg), "gallery", "sync", "--json"])
    assert r.exit_code == 0, r.output


def mqtt(broker: LocalBroker, pki: dict[str, Path], identity: str = UNIT) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": broker.ports["mtls"],
        "ca_file": pki["ca"],
        "cert_file": pki[f"{identity}.crt"],
        "key_file": pki[f"{identity}.key"],
        "connect_timeout_s": 5,
    }


def write_video(path: Path, frames: int = 8) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    assert w.isOpened()
    for i in range(frames):
        w.write(np.full((120, 160, 3), 30 * i, np.uint8))
    w.release()
    return path
