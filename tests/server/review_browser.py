"""A real server process with a backlog of pending matches, for the review-speed and layout browser tests
(Playwright driving Debian's Chromium, as tests/server/test_browser.py does).

The results are stored as the ingest stores them (no broker, no unit: those are test_browser.py's), each
with a probe crop cut from an LFW photo (read from ../shared/data/lfw at test time, never copied into
the repo). Screenshots go under tests/artifacts/<name>/.
"""

from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from edgeface.gallery.signing import generate_keypair
from edgeface.mqtt import payloads
from edgeface.server.db import Database
from edgeface.server.ingest import DbResultStore
from edgeface.server.run import wait_port
from edgeface.testing.broker import free_port
from edgeface.testing.mqttload import sample_result

from .conftest import ARTIFACTS, PASSWORD
from .test_browser import CHROMIUM, CHROMIUM_ARGS, edgeface, toml

__all__ = ["ARTIFACTS", "CHROMIUM", "CHROMIUM_ARGS", "PASSWORD", "ReviewServer", "review_server", "shots_dir"]


def _lfw_crops(lfw: Path, n: int) -> list[dict[str, Any]]:
    """``n`` probe crops (the middle of LFW's deep-funneled photos, where the face is), as units send them."""
    people = sorted(p for p in (lfw / "images").iterdir() if p.is_dir())[:n]
    out = []
    for person in people:
        rgb = np.asarray(Image.open(sorted(person.glob("*.jpg"))[0]).convert("RGB"))
        out.append(payloads.crop_payload(np.ascontiguousarray(rgb[60:190, 70:180]), max_bytes=16384))
    return out


class ReviewServer:
    def __init__(self, url: str, db_url: str, docs: list[dict[str, Any]]) -> None:
        self.url, self.db_url, self.docs = url, db_url, docs

    def login(self, page: Any, user: str = "rita") -> None:
        from playwright.sync_api import expect

        page.goto(self.url + "/login")
        page.fill("#username", user)
        page.fill("#password", PASSWORD)
        page.click("#login")
        expect(page.locator("h1")).to_contain_text("Review queue")


@contextmanager
def review_server(tmp: Path, lfw: Path, n: int) -> Iterator[ReviewServer]:
    """A server (SQLite, no broker) whose queue holds ``n`` pending matches with crops; reviewer rita."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run installs it)")
    generate_keypair(tmp / "keys" / "signing.pem", tmp / "keys" / "signing.pub")
    port = free_port()
    db_url = f"sqlite:///{tmp / 'server.sqlite3'}"
    cfg = toml(
        tmp / "server.toml",
        {
            "server": {
                "database_url": db_url,
                "data_dir": tmp / "data",
                "signing_key": tmp / "keys" / "signing.pem",
                "port": port,
                "cookie_secure": False,
                "ingest_workers": 0,
                "public_url": f"http://127.0.0.1:{port}",
            },
            "mqtt": {"host": ""},
        },
    )
    pw = tmp / "password"
    pw.write_text(PASSWORD + "\n")
    r = edgeface("--config", str(cfg), "server", "add-user", "rita", "--role", "reviewer", "--password-file", str(pw))
    assert r.returncode == 0, r.stderr
    db = Database(db_url)
    db.migrate()
    rng = random.Random(16)
    docs = [sample_result("unit-7", rng, match_share=1.0, crop=c) for c in _lfw_crops(lfw, n)]
    DbResultStore(db).add(docs)
    db.dispose()
    log = open(tmp / "server.log", "w")  # noqa: SIM115 (closed when the server stops)
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeface", "--config", str(cfg), "server", "run"], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        assert wait_port("127.0.0.1", port, 60), (tmp / "server.log").read_text()[-3000:]
        yield ReviewServer(f"http://127.0.0.1:{port}", db_url, docs)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def shots_dir(name: str) -> Path:
    import shutil

    d = ARTIFACTS / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d
