"""Enrollment with the real embedder on LFW images: provenance, refusals with reasons, near-duplicate
flags, incremental re-runs, and the enrolled gallery identifying a held-out photo."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from edgeface.config import load_config
from edgeface.errors import EdgefaceError
from edgeface.gallery.enroll import Workspace, enroll, read_csv, read_folder, settings_key
from edgeface.gallery.match import Gallery
from edgeface.gallery.publish import publish_for
from edgeface.vision.engine import Engine

PEOPLE = ["Colin_Powell", "Tony_Blair", "Gloria_Macapagal_Arroyo"]


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(load_config(env={}))


@pytest.fixture
def folder(tmp_path, lfw_root):  # type: ignore[no-untyped-def]
    """people/<identity>/ with 3 LFW images each, plus a re-encoded copy, a blurred photo, a blank image."""
    root = tmp_path / "people"
    for p in PEOPLE:
        (root / p).mkdir(parents=True)
        for i in (1, 2, 3):
            shutil.copy(lfw_root / "images" / p / f"{p}_{i:04d}.jpg", root / p)
    a = root / PEOPLE[0]
    img = cv2.imread(str(a / f"{PEOPLE[0]}_0001.jpg"))
    cv2.imwrite(str(a / "recompressed.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 60])  # near-duplicate
    cv2.imwrite(str(a / "blurred.jpg"), cv2.GaussianBlur(img, (0, 0), 6))  # fails the sharpness check
    cv2.imwrite(str(a / "blank.png"), np.full((200, 200, 3), 128, np.uint8))  # no face at all
    shutil.copy(lfw_root / "images" / PEOPLE[1] / f"{PEOPLE[1]}_0001.jpg", root / PEOPLE[2] / "mislabelled.jpg")
    return root


def test_enroll_folder(tmp_path, folder, engine, lfw_root):
    ws = Workspace(tmp_path / "ws")
    items = read_folder(folder, consent="public record (test)", source="LFW", enrolled_by="pytest")
    report = enroll(engine, ws, items)
    by_name = {r.item.image.name: r for r in report.results}
    c = report.counts()
    # the mislabelled file is byte-identical to an image already processed: answered from the cache
    assert c["enrolled"] == 3 * 3 + 2 and c["refused"] == 2 and c["embedded"] == 10

    blurred, blank = by_name["blurred.jpg"], by_name["blank.png"]
    assert blurred.status == "refused" and any(r.startswith("sharpness") for r in blurred.reasons)
    assert blank.status == "refused" and blank.reasons == ["no face found"]

    dup = by_name["recompressed.jpg"].duplicates
    assert any(d["identity"] == PEOPLE[0] and d["same_identity"] and not d["exact"] for d in dup)
    cross = by_name["mislabelled.jpg"].duplicates
    assert any(d["identity"] == PEOPLE[1] and not d["same_identity"] and d["exact"] for d in cross)
    # a near-duplicate is named by the file it was enrolled from, not only by its SHA-256
    assert any(d["file"] and d["file"].endswith(f"{PEOPLE[1]}_0001.jpg") for d in cross)

    vectors, entries, identities = ws.content()
    assert len(entries) == 11 and {i["id"] for i in identities} == set(PEOPLE)
    e = entries[0]
    assert e["consent"] == "public record (test)" and e["source"] == "LFW" and e["enrolled_by"] == "pytest"
    assert e["enrolled_at"].endswith("Z") and len(e["image"]) == 64
    first_enrolled = {x["image"]: x["enrolled_at"] for x in entries}

    # a re-run embeds nothing: every image is answered from the cache, refusals included
    again = enroll(engine, ws, read_folder(folder, consent="public record (test)", source="LFW", enrolled_by="pytest"))
    c2 = again.counts()
    assert c2["embedded"] == 0 and c2["unchanged"] == 11 and c2["refused"] == 2
    assert {x["image"]: x["enrolled_at"] for x in ws.content()[1]} == first_enrolled
    # a new image is the only one embedded
    shutil.copy(lfw_root / "images" / PEOPLE[1] / f"{PEOPLE[1]}_0004.jpg", folder / PEOPLE[1])
    third = enroll(engine, ws, read_folder(folder, consent="public record (test)", source="LFW"))
    assert third.counts()["embedded"] == 1

    # the enrolled gallery, built and signed as the central side does, identifies a held-out photo
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    card = engine.embedder_card
    key = Ed25519PrivateKey.generate()
    vectors, entries, identities = ws.content(settings_key(engine, 0.7))
    pub = publish_for(
        tmp_path / "pub", card, vectors=vectors, entries=entries, identities=identities, signer=key, target_fpir=0.01
    )
    g = Gallery.open(pub.dir, [key.public_key()], embedder_sha256=card.sha256)
    probe_img = engine.load_image(lfw_root / "images" / PEOPLE[2] / f"{PEOPLE[2]}_0005.jpg")
    face = engine.detect_and_assess(probe_img)[0].face
    decision = g.identify(engine.embed(engine.align(probe_img, face)), top_k=3)
    assert decision.match is not None and decision.match.identity == PEOPLE[2]
    assert g.entry(decision.match.row)["consent"] == "public record (test)"
    ws.close()


def test_enroll_csv_and_cli(tmp_path, folder, lfw_root):
    rows = [
        {
            "identity": "cp",
            "image": f"people/{PEOPLE[0]}/{PEOPLE[0]}_0002.jpg",
            "name": "Colin Powell",
            "consent": "written consent 2025-01-01",
            "source": "press office",
        },
        {
            "identity": "tb",
            "image": f"people/{PEOPLE[1]}/{PEOPLE[1]}_0002.jpg",
            "name": "Tony Blair",
            "consent": "",
            "source": "archive",
        },
    ]
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.DictWriter(f, ["identity", "image", "name", "consent", "source"])
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(EdgefaceError, match="line 3: no consent"):
        read_csv(manifest)
    items = read_csv(manifest, consent="legal basis: art. 6(1)(e)")
    assert items[0].consent == "written consent 2025-01-01" and items[1].consent == "legal basis: art. 6(1)(e)"
    assert items[0].image.is_file() and items[0].name == "Colin Powell"

    cmd = [
        sys.executable,
        "-c",
        "import sys; from edgeface.cli import main; sys.exit(main(sys.argv[1:]))",
        "enroll",
        str(manifest),
        "--consent",
        "legal basis: art. 6(1)(e)",
        "--workspace",
        str(tmp_path / "ws"),
        "--json",
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    lines = [json.loads(x) for x in p.stdout.splitlines()]
    assert [x["status"] for x in lines[:2]] == ["enrolled", "enrolled"]
    assert lines[-1]["summary"]["enrolled"] == 2
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert json.loads(p.stdout.splitlines()[-1])["summary"] == {
        "images": 2,
        "embedded": 0,
        "flagged_duplicates": 0,
        "unchanged": 2,
    }
    # a refused image makes the command exit 1 and say why
    p = subprocess.run(
        [*cmd[:4], str(folder), "--consent", "test", "--workspace", str(tmp_path / "ws")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 1 and "blank.png: REFUSED — no face found" in p.stdout


def test_the_default_workspace_is_one_place_and_build_names_a_missing_one(tmp_path, lfw_root):
    """`enroll` and `gallery build` run from different folders find the same workspace (it lives under
    the home folder, not the current one); a workspace that does not exist is named, not created empty."""
    home, a, b = tmp_path / "home", tmp_path / "a", tmp_path / "b"
    for d in (home, a, b):
        d.mkdir()
    people = a / "people" / PEOPLE[0]
    people.mkdir(parents=True)
    shutil.copy(lfw_root / "images" / PEOPLE[0] / f"{PEOPLE[0]}_0001.jpg", people)
    env = {**os.environ, "HOME": str(home)}
    env.pop("EDGEFACE_CONFIG", None)
    cli = [sys.executable, "-c", "import sys; from edgeface.cli import main; sys.exit(main(sys.argv[1:]))"]
    p = subprocess.run(
        [*cli, "enroll", "people", "--consent", "test"], cwd=a, env=env, capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 0, p.stderr
    assert (home / ".local/share/edgeface/enrollment").is_dir() and not (a / "enrollment").exists()

    p = subprocess.run(
        [*cli, "gallery", "keygen", "--signing-key", "k.pem", "--public-key", "k.pub"],
        cwd=b,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    p = subprocess.run(
        [*cli, "gallery", "build", "--publish", "pub", "--signing-key", "k.pem"],
        cwd=b,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0 and "published gallery version 1: 1 images" in p.stdout, p.stderr
    missing = tmp_path / "nowhere"
    p = subprocess.run(
        [*cli, "gallery", "build", "--publish", "pub", "--signing-key", "k.pem", "--workspace", str(missing)],
        cwd=b,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 1 and f"no enrollment workspace at {missing}" in p.stderr
    assert not missing.exists()
