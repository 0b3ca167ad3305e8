"""The embedded default: `edgeface run` with no configuration runs the bundled sample through the whole loop."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from daemon_helpers import REPO

from edgeface.config import load_config
from edgeface.daemon import demo
from edgeface.errors import ConfigError
from edgeface.gallery.manifest import Manifest
from edgeface.outbox import Outbox
from edgeface.vision.cards import find_card


def test_sample_gallery_is_built_for_the_default_embedder() -> None:
    m = Manifest.from_bytes((demo.GALLERY / "manifest.json").read_bytes())
    card = find_card(load_config(None, env={}).models.embedder, None, task="embedder")
    assert m.embedder.sha256 == card.sha256, (
        f"the sample gallery was built for embedder {m.embedder.id} {m.embedder.sha256[:12]}, the default is now "
        f"{card.id} {card.sha256[:12]}: rebuild it with `python tools/build_sample.py`"
    )
    assert m.count == 2 and "DEMO ONLY" in demo.DEMO_KEY.read_text()


def test_every_shipped_photo_has_its_provenance() -> None:
    text = (demo.SAMPLE / "PROVENANCE.md").read_text()
    for p in demo.PHOTOS.iterdir():
        assert p.name in text and hashlib.sha256(p.read_bytes()).hexdigest() in text, p


def test_unconfigured_run_is_the_demo_and_queues_results_offline(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFACE_")}
    env["EDGEFACE_DEMO_DIR"] = str(tmp_path / "demo")
    r = subprocess.run(
        [sys.executable, "-m", "edgeface", "run"],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "running the bundled demo" in r.stderr
    lines = r.stdout.splitlines()
    assert any("01-obama-address-to-congress.jpg" in x and "match" in x and "Barack Obama" in x for x in lines)
    # a "no match" says at which threshold it was decided (the bundle's 1:N threshold, not a mystery)
    assert any("03-eileen-collins-nasa.jpg" in x and "no_match" in x and "at threshold 0." in x for x in lines)
    assert any("04-blurred-obama.jpg" in x and "refused" in x and "sharpness" in x for x in lines)
    assert "4 results queued offline" in r.stdout
    with Outbox(tmp_path / "demo" / "outbox.sqlite3") as box:
        assert box.pending_count() == 4
    # `edgeface status` with nothing configured shows that run (not the never-run default unit), and keeps it
    for _ in range(2):
        s = subprocess.run(
            [sys.executable, "-m", "edgeface", "status", "--json"],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            cwd=tmp_path,
        )
        assert s.returncode == 3, s.stderr[-3000:]  # not running
        doc = json.loads(s.stdout)
        assert doc["demo"] == str(tmp_path / "demo") and doc["daemon"] == "stopped"
        assert doc["outbox"]["pending"] == 4 and doc["counters"]["results"] == {"match": 2, "no_match": 1, "refused": 1}


def test_wants_demo_only_when_nothing_is_configured() -> None:
    assert demo.wants_demo(None, [], env={})
    assert demo.wants_demo(None, ["logging.level=debug"], env={"EDGEFACE_LOGGING__FORMAT": "json"})
    assert not demo.wants_demo("unit.toml", [], env={})
    assert not demo.wants_demo(None, [], env={"EDGEFACE_CONFIG": "/etc/edgeface/edgeface.toml"})
    assert not demo.wants_demo(None, [], env={"EDGEFACE_CAPTURE__SOURCE": "opencv"})
    assert not demo.wants_demo(None, ["capture.source=opencv"], env={})


def test_a_unit_that_trusts_the_demo_key_is_refused(tmp_path: Path) -> None:
    config = load_config(None, env={}, overrides=[f'gallery.trusted_keys=["{demo.DEMO_KEY}"]'])
    with pytest.raises(ConfigError, match="DEMO signing key"):
        demo.refuse_demo_key(config)
    copy = tmp_path / "central.pub"
    copy.write_bytes(demo.DEMO_KEY.read_bytes())  # the same key under another name
    with pytest.raises(ConfigError):
        demo.refuse_demo_key(load_config(None, env={}, overrides=[f'gallery.trusted_keys=["{copy}"]']))


def test_the_wheel_carries_the_sample_data(tmp_path: Path) -> None:
    """`pip install .` must bring the demo along (hatchling packs edgeface/ including _sample/)."""
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "--wheel-dir", str(tmp_path), str(REPO)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]  # as `pip install .` builds it (hatchling from the index)
    (wheel,) = tmp_path.glob("edgeface-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for p in [*demo.PHOTOS.iterdir(), *demo.GALLERY.iterdir(), demo.DEMO_KEY, demo.SAMPLE / "PROVENANCE.md"]:
        assert "edgeface/" + p.relative_to(demo.SAMPLE.parent).as_posix() in names, p
    # every model the defaults use, with its card; the float32 embedder stays in the repository only
    from edgeface.config import Config
    from edgeface.vision.cards import find_card

    cfg = Config()
    embedder = find_card(cfg.models.embedder)
    assert embedder.embedder is not None
    for card in (find_card(cfg.models.detector), embedder, find_card(embedder.embedder.alignment.landmark_model)):
        assert f"edgeface/_models/{card.path.name}" in names and f"edgeface/_models/{card.file}" in names
    assert not any("float32" in n for n in names)
    assert not any(n.startswith("edgeface/testing/") for n in names)  # no test harness on a unit
    assert "edgeface/py.typed" in names  # the library's types reach its users (PEP 561)
