"""`edgeface identify` as a user runs it (the console entry point, in a subprocess): the daemon's decisions on
the installed gallery, a signed bundle folder, the --json shape, and the exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sample_photos import SAMPLE_PHOTOS, feed

from edgeface.config import Config
from edgeface.daemon import Daemon

MakeUnit = Callable[..., tuple[Config, Path]]


def edgeface(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgeface", "--log-level", "warning", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def records(r: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_identify_decides_as_the_daemon_does_on_the_installed_gallery(make_unit: MakeUnit) -> None:
    config, path = make_unit(**{"capture.folder": {"once": True}})
    feed(Path(config.capture.folder.path), SAMPLE_PHOTOS, names=[p.name for p in SAMPLE_PHOTOS])
    seen: list[dict[str, Any]] = []
    assert Daemon(config, install_signals=False, on_result=seen.append).run() == 0
    daemon = {r["source"]: r for r in seen}
    assert sorted(r["decision"] for r in seen) == ["match", "match", "no_match", "refused"]

    r = edgeface("--config", str(path), "identify", "--json", *map(str, SAMPLE_PHOTOS))
    assert r.returncode == 0, r.stderr
    recs = records(r)
    assert [rec["image"] for rec in recs] == [str(p) for p in SAMPLE_PHOTOS]
    for rec in recs:
        (face,) = rec["faces"]
        want = daemon[Path(rec["image"]).name]
        assert face["verdict"] == want["decision"] and rec["gallery_version"] == 1
        if want["decision"] == "refused":
            assert face["decision"] is None and face["quality"]["reasons"] == want["reasons"]
            continue
        top = face["decision"]["candidates"][0]
        assert top["identity"] == want["identity"] and abs(top["score"] - want["score"]) <= 1e-4
        assert face["decision"]["threshold"] == want["threshold"]

    text = edgeface("--config", str(path), "identify", *map(str, SAMPLE_PHOTOS))
    assert text.returncode == 0, text.stderr
    assert text.stdout.count("MATCH Barack Obama (barack-obama)") == 2
    assert "no match at threshold" in text.stdout and "refused (sharpness" in text.stdout


def test_identify_with_a_signed_bundle_folder_and_its_json_shape(
    test_gallery: tuple[Path, Path], images_dir: Path
) -> None:
    bundle, pub = test_gallery
    args = [str(images_dir / "obama2.jpg"), str(images_dir / "biden.jpg")]
    r = edgeface("identify", "--json", "--top-k", "1", "--bundle", str(bundle), "--trusted-key", str(pub), *args)
    assert r.returncode == 0, r.stderr
    obama, biden = records(r)
    assert set(obama) == {"image", "width", "height", "gallery_version", "model", "faces"}
    (face,) = obama["faces"]
    assert {"box", "keypoints", "score", "rotation", "quality", "verdict", "decision"} <= set(face)
    assert face["quality"]["passed"] is True and face["verdict"] == "match"
    d = face["decision"]
    assert set(d) >= {"match", "threshold", "candidates"} and len(d["candidates"]) == 1  # --top-k 1
    assert d["match"]["identity"] == "barack-obama" and d["match"]["score"] >= d["threshold"]
    assert biden["faces"][0]["decision"]["match"]["identity"] == "joe-biden"
    assert biden["faces"][0]["decision"]["match"]["score"] > 0.99  # the photo Joe Biden was enrolled from


def test_identify_exit_codes_and_what_the_errors_say(
    test_gallery: tuple[Path, Path], images_dir: Path, tmp_path: Path
) -> None:
    bundle, pub = test_gallery
    good = str(images_dir / "obama.jpg")

    missing = edgeface("identify", "--bundle", str(tmp_path / "nowhere"), "--trusted-key", str(pub), good)
    assert missing.returncode == 2 and "no such folder" in missing.stderr and missing.stdout == ""

    root = edgeface("identify", "--bundle", str(bundle.parent), "--trusted-key", str(pub), good)
    assert root.returncode == 2 and f"the bundles inside it: {bundle.name}" in root.stderr

    no_key = edgeface("--set", "gallery.trusted_keys=[]", "identify", "--bundle", str(bundle), good)
    assert no_key.returncode == 2 and "--trusted-key" in no_key.stderr

    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes((images_dir / "obama.jpg").read_bytes()[:3000])
    args = [good, str(tmp_path / "missing.jpg"), str(corrupt), str(images_dir / "biden.jpg")]
    r = edgeface("identify", "--json", "--bundle", str(bundle), "--trusted-key", str(pub), *args)
    assert r.returncode == 1, r.stderr  # unreadable images: reported in their place, the others still identified
    recs = records(r)
    assert [rec["image"] for rec in recs] == args
    assert "error" in recs[1] and "error" in recs[2] and "faces" not in recs[1]
    assert recs[0]["faces"][0]["verdict"] == "match" and recs[3]["faces"][0]["verdict"] == "match"

    tampered = tmp_path / "tampered"
    shutil.copytree(bundle, tampered)
    vectors = tampered / "vectors.npy"
    data = bytearray(vectors.read_bytes())
    data[-1] ^= 0x01
    vectors.write_bytes(bytes(data))
    bad = edgeface("identify", "--bundle", str(tampered), "--trusted-key", str(pub), good)
    assert bad.returncode == 1 and "edgeface: error:" in bad.stderr and bad.stdout == ""
