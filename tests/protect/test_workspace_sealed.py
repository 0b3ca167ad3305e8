"""The enrollment workspace on a unit with a device key: one sealed file, nothing personal readable at rest;
reopened (cache hits, nothing embedded again), converted once from plaintext, refused without the key, and
destroyed by the wipe. The server's workspace (no sealer) stays plain SQLite."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from edgeface.config import Config, load_config
from edgeface.errors import EdgefaceError
from edgeface.gallery.crypto import generate_key_file
from edgeface.gallery.enroll import DB_NAME, SEALED_NAME, Workspace, enroll, read_folder
from edgeface.protect.sealed import Sealer, SealError
from edgeface.protect.sealed_sqlite import enroll_sealer
from edgeface.protect.wipe import wipe_unit
from edgeface.vision.engine import Engine

PEOPLE = ["Colin_Powell", "Tony_Blair"]
CONSENT = "court order 4711/26 (test)"
CLI = [sys.executable, "-c", "import sys; from edgeface.cli import main; sys.exit(main(sys.argv[1:]))"]


@pytest.fixture
def people(tmp_path: Path, lfw_root: Path) -> Path:
    root = tmp_path / "people"
    for p in PEOPLE:
        (root / p).mkdir(parents=True)
        for i in (1, 2):
            shutil.copy(lfw_root / "images" / p / f"{p}_{i:04d}.jpg", root / p)
    return root


def unit_settings(tmp_path: Path) -> list[str]:
    """A unit whose device key is a file on 'removable media' (so a key is configured, not created)."""
    key = tmp_path / "usb" / "device.key"
    if not key.exists():
        key.parent.mkdir()
        generate_key_file(key)
    return [
        f"gallery.key_file={key}",
        f"outbox.path={tmp_path / 'unit' / 'outbox.sqlite3'}",
        f"run.state_dir={tmp_path / 'unit' / 'state'}",
        f"retention.dir={tmp_path / 'unit' / 'media'}",
        f"gallery.dir={tmp_path / 'unit' / 'gallery'}",
        f"enroll.workspace={tmp_path / 'unit' / 'enrollment'}",
    ]


def unit_config(tmp_path: Path) -> Config:
    return load_config(None, env={}, overrides=unit_settings(tmp_path))


def run_enroll(tmp_path: Path, people: Path) -> subprocess.CompletedProcess[str]:
    sets = [a for s in unit_settings(tmp_path) for a in ("--set", s)]
    env = {k: v for k, v in os.environ.items() if k not in ("EDGEFACE_CONFIG", "EDGEFACE_GALLERY_KEY")}
    return subprocess.run(
        [*CLI, *sets, "enroll", str(people), "--consent", CONSENT, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def personal_strings(people: Path) -> list[bytes]:
    out = [CONSENT.encode(), str(people).encode()]
    for p in PEOPLE:
        out += [p.encode(), p.replace("_", " ").encode()]
    return out


def test_enroll_on_a_unit_seals_the_workspace_and_reopens_from_the_cache(tmp_path: Path, people: Path) -> None:
    p = run_enroll(tmp_path, people)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.splitlines()[-1])["summary"]["enrolled"] == 4

    ws_dir = tmp_path / "unit" / "enrollment"
    files = sorted(x for x in ws_dir.rglob("*") if x.is_file())
    assert [f.name for f in files] == [SEALED_NAME]  # no plaintext database, WAL or journal beside it
    for f in files:
        data = f.read_bytes()
        assert b"SQLite format 3" not in data
        leaked = [s for s in personal_strings(people) if s in data]
        assert leaked == [], f"{f} gives away {leaked}"

    # reopened with the key: everything is there, and a rerun embeds nothing (every image a cache hit)
    ws = Workspace(ws_dir, sealer=enroll_sealer(unit_config(tmp_path)))
    try:
        _, entries, identities = ws.content()
        assert {i["id"] for i in identities} == set(PEOPLE) and {e["consent"] for e in entries} == {CONSENT}
    finally:
        ws.close()
    p = run_enroll(tmp_path, people)
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout.splitlines()[-1])["summary"]
    assert summary["embedded"] == 0 and summary["unchanged"] == 4

    # without the key it is refused with what to do; under another unit's key it does not open
    with pytest.raises(EdgefaceError, match="sealed under a unit's device key"):
        Workspace(ws_dir)
    with pytest.raises(SealError):
        Workspace(ws_dir, sealer=Sealer(os.urandom(32), "enroll"))

    # the wipe destroys it with the key
    report = wipe_unit(unit_config(tmp_path), environ={})
    assert report.ok, report.not_destroyed
    assert not ws_dir.exists() and not (tmp_path / "usb" / "device.key").exists()


def test_a_plaintext_workspace_on_a_unit_is_sealed_once(tmp_path: Path, people: Path) -> None:
    """The server's way (no sealer) is plain SQLite; the same folder opened on a unit is converted."""
    ws_dir = tmp_path / "unit" / "enrollment"
    engine = Engine(load_config(env={}))
    ws = Workspace(ws_dir)  # as edgeface/server opens data_dir/workspace
    try:
        enroll(engine, ws, read_folder(people, consent=CONSENT, source="LFW", enrolled_by="pytest"))
    finally:
        ws.close()
    plain = ws_dir / DB_NAME
    with sqlite3.connect(plain) as db:  # an ordinary SQLite file anyone can read
        assert db.execute("SELECT DISTINCT consent FROM entries").fetchall() == [(CONSENT,)]
    db.close()

    sealer = enroll_sealer(unit_config(tmp_path))
    assert sealer is not None
    ws = Workspace(ws_dir, sealer=sealer)
    ws.close()
    assert sorted(f.name for f in ws_dir.iterdir()) == [SEALED_NAME]
    assert CONSENT.encode() not in (ws_dir / SEALED_NAME).read_bytes()
    p = run_enroll(tmp_path, people)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.splitlines()[-1])["summary"]["embedded"] == 0

    # a central machine (no key configured) gets no sealer: its workspace stays plaintext
    assert enroll_sealer(load_config(None, env={}, overrides=[f"enroll.workspace={tmp_path / 'c'}"])) is None
