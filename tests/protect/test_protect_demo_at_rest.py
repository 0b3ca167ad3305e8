"""Acceptance (issue 15, item 1): after `edgeface run` on the sample photos no candidate name, score or crop is
readable from any file the unit keeps without the key; after `edgeface unit wipe` nothing is left to decrypt and
the exit status says so honestly."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edgeface.daemon import demo
from edgeface.errors import GalleryKeyError
from edgeface.outbox import Outbox
from edgeface.protect.keys import load_unit_key

JPEG_MAGIC = (b"\xff\xd8\xff", b"/9j/")  # raw, and as base64 starts it in a JSON payload


def edgeface(args: list[str], demo_dir: Path, cwd: Path, extra_env: dict[str, str] | None = None) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFACE_")}
    env["EDGEFACE_DEMO_DIR"] = str(demo_dir)
    env.update(extra_env or {})
    return subprocess.run(
        [sys.executable, "-m", "edgeface", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=cwd,
    )


def sample_names() -> set[str]:
    names = set()
    for line in (demo.GALLERY / "identities.ndjson").read_text().splitlines():
        doc = json.loads(line)
        names |= {str(v) for k, v in doc.items() if k in ("id", "identity_id", "name") and v}
    assert {"Barack Obama", "Joe Biden"} <= names
    return names


def secrets_of(docs: list[dict[str, Any]]) -> set[bytes]:
    """Every string that would give a result away: names, ids and scores as JSON wrote them, crop bytes."""
    out = {n.encode() for n in sample_names()}
    for d in docs:
        for c in d.get("candidates", []):
            out |= {str(c["identity_id"]).encode(), json.dumps(c["score"]).encode()}
            if c.get("name"):
                out.add(c["name"].encode())
        if d.get("crop"):
            data = d["crop"]["data"]
            out |= {data[100:140].encode(), base64.b64decode(data)[200:240]}
    return out


def readable(root: Path, secrets: set[bytes], skip: frozenset[Path] | set[Path] = frozenset()) -> dict[str, list[str]]:
    """Which secret (or JPEG magic) each file under ``root`` holds in clear: every file, WAL and SHM included."""
    found: dict[str, list[str]] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p not in skip:
            data = p.read_bytes()
            hits = [s.decode(errors="replace") for s in (*secrets, *JPEG_MAGIC) if s in data]
            if hits:
                found[str(p.relative_to(root))] = hits
    return found


def outbox_docs(d: Path, overrides: list[str]) -> list[dict[str, Any]]:
    config = demo.demo_config(overrides, directory=d, fresh=False)
    with Outbox.for_unit(config) as box:
        return [json.loads(r.payload) for r in box.fetch(100)]


def test_a_demo_run_leaves_nothing_readable_and_unit_wipe_erases_it(tmp_path: Path) -> None:
    d = tmp_path / "demo"
    r = edgeface(["run"], d, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    docs = outbox_docs(d, [])
    assert len(docs) == 4 and sum(1 for x in docs if x["decision"] == "match") == 2
    assert sum(1 for x in docs if x.get("crop")) >= 3  # the crop travels with each result by default
    secrets = secrets_of(docs)
    key = demo.demo_key_file(d)
    assert readable(d, secrets, skip={key}) == {}
    image = tmp_path / "card-image"  # what a seized card held before the wipe
    shutil.copytree(d, image)

    w = edgeface(["unit", "wipe", "--demo", "--yes", "--json"], d, tmp_path)
    assert w.returncode == 0, w.stdout + w.stderr[-3000:]
    report = json.loads(w.stdout)
    assert report["ok"] is True and report["not_destroyed"] == []
    assert f"device key {key}" in report["destroyed"]
    assert [p for p in d.rglob("*") if p.is_file()] == []  # key, outbox, state, gallery: all gone
    with pytest.raises(GalleryKeyError):  # and no key is left to open the earlier copy with
        load_unit_key(demo.demo_config([], directory=d, fresh=False), create=False)
    assert readable(image, secrets, skip={image / "keys" / "device.key"}) == {}


def test_with_encryption_off_the_same_check_finds_everything(tmp_path: Path) -> None:
    """The check above can fail: without protection the names, scores and crops are in the files."""
    d = tmp_path / "demo"
    off = ["protect.encrypt=false", "gallery.encrypt=false"]
    r = edgeface([*(a for o in off for a in ("--set", o)), "run", "--demo"], d, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    docs = outbox_docs(d, off)
    found = readable(d, secrets_of(docs))
    flat = {h for hits in found.values() for h in hits}
    assert "outbox.sqlite3" in found and "Barack Obama" in flat and "/9j/" in flat
    assert any(json.dumps(c["score"]) in flat for x in docs for c in x.get("candidates", []))


def test_key_on_removable_media_and_saved_crops(tmp_path: Path) -> None:
    """The key kept off the card (here: another folder, as a USB stick would be): nothing on the card opens, saved
    face crops included; the wipe destroys the key on the media too."""
    d, media = tmp_path / "demo", tmp_path / "usb-stick"
    media.mkdir()
    sets = [f"gallery.key_file={media / 'device.key'}", "retention.save=crop", "retention.keep_after_ack_s=3600"]
    args = [a for s in sets for a in ("--set", s)]
    r = edgeface([*args, "run", "--demo"], d, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (media / "device.key").exists() and not (d / "keys").exists()
    saved = sorted((d / "media").rglob("*.jpg"))
    assert len(saved) >= 3
    docs = outbox_docs(d, sets)
    assert readable(d, secrets_of(docs)) == {}  # every file on the card, crops included
    w = edgeface([*args, "unit", "wipe", "--demo", "--yes"], d, tmp_path)
    assert w.returncode == 0, w.stdout + w.stderr
    assert "unit wiped" in w.stdout and not (media / "device.key").exists()
    assert [p for p in d.rglob("*") if p.is_file()] == []


def test_a_key_the_wipe_cannot_destroy_makes_it_fail_and_say_what(tmp_path: Path) -> None:
    d = tmp_path / "demo"
    key_hex = os.urandom(32).hex()
    env = {"EDGEFACE_GALLERY_KEY": key_hex}
    assert edgeface(["run", "--demo"], d, tmp_path, env).returncode == 0
    w = edgeface(["unit", "wipe", "--demo", "--yes"], d, tmp_path, env)
    assert w.returncode == 1
    assert "WIPE INCOMPLETE" in w.stdout and "$EDGEFACE_GALLERY_KEY" in w.stderr
    assert not (d / "outbox.sqlite3").exists()  # the data is still destroyed; the key is what remains
