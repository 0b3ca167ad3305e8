"""Helpers for the daemon tests (imported by conftest.py and the test modules): a unit's configuration
under a temp folder, signed galleries built with the current models, and the daemon as a child process."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgeface.config import Config

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


def build_gallery(root: Path, people: list[tuple[str, str, Path]]) -> tuple[Path, Path]:
    """Enroll ``people`` (identity id, name, photo) with the current models and publish a bundle signed with
    a new test key: (bundle dir, public key file). A unit must not trust the demo key, so tests do not either."""
    from edgeface.config import load_config
    from edgeface.gallery import signing
    from edgeface.gallery.enroll import EnrollItem, Workspace, enroll, settings_key
    from edgeface.gallery.publish import publish_for
    from edgeface.vision.engine import Engine

    config = load_config(None, env={})
    engine = Engine(config)
    ws = Workspace(root / "workspace")
    enroll(engine, ws, [EnrollItem(pid, path, "public domain", "tests", "pytest", name) for pid, name, path in people])
    vectors, entries, identities = ws.content(settings_key(engine, config.enroll.second_face_ratio))
    ws.close()
    signing.generate_keypair(root / "central.pem", root / "central.pub")
    pub = publish_for(
        root / "publish",
        engine.embedder_card,
        vectors=vectors,
        entries=entries,
        identities=identities,
        signer=signing.load_private_key(root / "central.pem"),
        target_fpir=config.gallery.target_fpir,
    )
    return pub.dir, root / "central.pub"


def install_gallery(config: Config, bundle: Path) -> None:
    """Install a published bundle on the unit of ``config`` as a sync would (staged, verified, swapped)."""
    from edgeface.gallery.store import GalleryStore

    store = GalleryStore.from_config(config.gallery, config.models)
    staged = store.staging(1)
    for f in bundle.iterdir():
        shutil.copyfile(f, staged / f.name)
    store.install(staged)
