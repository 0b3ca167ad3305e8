"""Helpers for the daemon tests (imported by conftest.py and the test modules): a unit's configuration
under a temp folder, and the daemon as a child process."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from edgeface.testing.mqttload import Child

REPO = Path(__file__).resolve().parents[2]


def unit_sections(root: Path, **sections: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A unit's configuration, everything under ``root``, the sample gallery trusted (demo key)."""
    base: dict[str, dict[str, Any]] = {
        "device": {"id": "unit-test"},
        "capture": {"source": "folder", "retry_min_s": 0.05, "retry_max_s": 0.2},
        "capture.folder": {"path": str(root / "inbox"), "settle_s": 0.0, "poll_s": 0.05},
        "gallery": {"dir": str(root / "gallery"), "encrypt": False},
        "outbox": {"path": str(root / "outbox.sqlite3")},
        "run": {"state_dir": str(root / "state"), "drain_timeout_s": 60.0},
        "retention": {"dir": str(root / "media")},
        "status": {"interval_s": 0.2, "metrics_port": 0},
        "dedup": {"window_s": 0.0},
        "logging": {"level": "info"},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return base


def toml_text(sections: dict[str, dict[str, Any]]) -> str:
    def val(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    out = []
    for name, values in sections.items():
        out.append(f"[{name}]")
        out += [f"{k} = {val(v)}" for k, v in values.items()]
        out.append("")
    return "\n".join(out)


def edgeface_child(args: list[str], log: Path, env: dict[str, str] | None = None) -> Child:
    return Child(args, log, env=env)


def wait_child(child: Child, condition: Any, timeout: float) -> bool:
    """Poll ``condition()`` while the child runs; False at the timeout or as soon as the child exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if not child.alive:
            return bool(condition())
        time.sleep(0.05)
    return False
