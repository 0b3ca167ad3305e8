"""The whole loop in a real browser (Playwright driving Debian's Chromium, headless), against a real
server process, a real mosquitto and a field-unit process:

log in as an administrator, enroll two identities from public-domain portraits (tests/images,
PROVENANCE.md), issue the unit's download token, publish a gallery; the unit syncs it with
``edgeface gallery sync`` (its own credentials), identifies a probe photo and sends the result over MQTT
(``edgeface outbox drain``); a reviewer logs in, sees the candidate with the probe crop beside the enrolled
image, confirms it; the audit log verifies (web page and ``edgeface audit verify``).

Screenshots are kept under tests/artifacts/server-browser/ (printed at the end).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgeface.gallery.signing import generate_keypair
from edgeface.server.run import wait_port
from edgeface.testing.broker import LocalBroker, free_port

from .conftest import ARTIFACTS, PASSWORD

IMAGES = Path(__file__).resolve().parents[1] / "images"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
PROVENANCE = (
    "White House official portrait, US federal government work in the public domain (17 U.S.C. § 105); "
    "file from the face_recognition 1.3.0 sdist, see tests/images/PROVENANCE.md"
)
CONSENT = "public-domain official portrait; test fixture"


def toml(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        for k, v in values.items():
            lines.append(f"{k} = {json.dumps(str(v) if isinstance(v, Path) else v)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def edgeface(*args: str, timeout: float = 180, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgeface", *args], capture_output=True, text=True, timeout=timeout, check=False, **kw
    )


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict[str, Any]]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run installs it)")
    broker = LocalBroker.plain(tmp_path / "broker")
    broker.start()
    keys = tmp_path / "keys"
    generate_keypair(keys / "signing.pem", keys / "signing.pub")
    port = free_port()
    cfg = toml(
        tmp_path / "server.toml",
        {
            "server": {
                "database_url": f"sqlite:///{tmp_path / 'server.sqlite3'}",
                "data_dir": tmp_path / "data",
                "signing_key": keys / "signing.pem",
                "port": port,
                "cookie_secure": False,
                "ingest_workers": 1,
                "public_url": f"http://127.0.0.1:{port}",
            },
            "mqtt": {"host": "127.0.0.1", "port": broker.port, "tls": False},
            "ingest": {"client_id": "ingest-browser-test", "flush_ms": 20.0},
        },
    )
    pw = tmp_path / "password"
    pw.write_text(PASSWORD + "\n")
    for user, role in (("ada", "admin"), ("rita", "reviewer")):
        r = edgeface("--config", str(cfg), "server", "add-user", user, "--role", role, "--password-file", str(pw))
        assert r.returncode == 0, r.stderr
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 (closed when the server stops)
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeface", "--config", str(cfg), "server", "run"], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        assert wait_port("127.0.0.1", port, 60), (tmp_path / "server.log").read_text()[-3000:]
        yield {
            "tmp": tmp_path,
            "url": f"http://127.0.0.1:{port}",
            "config": cfg,
            "broker": broker,
            "keys": keys,
            "log": tmp_path / "server.log",
        }
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        broker.kill()


def test_whole_loop_in_a_browser(stack: dict[str, Any]) -> None:
    from playwright.sync_api import expect, sync_playwright

    shots = ARTIFACTS / "server-browser"
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    url, tmp = stack["url"], stack["tmp"]
    n = [0]

    def shot(page: Any, name: str) -> None:
        n[0] += 1
        page.screenshot(path=str(shots / f"{n[0]:02d}-{name}.png"), full_page=True)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            admin = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            admin.set_default_timeout(60_000)
            # log in as the administrator
            admin.goto(url + "/gallery")
            expect(admin).to_have_url(url + "/login?next=/gallery")
            admin.fill("#username", "ada")
            admin.fill("#password", PASSWORD)
            shot(admin, "login")
            admin.click("#login")
            expect(admin.locator("h1")).to_contain_text("Gallery")

            # enroll two identities, with provenance
            for ident, name, photo in (("obama", "Barack Obama", "obama.jpg"), ("biden", "Joe Biden", "biden.jpg")):
                admin.fill("#identity", ident)
                admin.fill("#name", name)
                admin.fill("#source", f"tests/images/{photo}: {PROVENANCE}")
                admin.fill("#consent", CONSENT)
                admin.set_input_files("#images", str(IMAGES / photo))
                admin.click("#enroll-submit")
                expect(admin.locator(".enroll-status")).to_have_text("enrolled")
                shot(admin, f"enrolled-{ident}")
                admin.click("#back")
            expect(admin.locator("#identities tr")).to_have_count(3)

            # the unit's own credential for the bundle endpoint
            admin.goto(url + "/fleet")
            admin.fill("#device-id", "unit-1")
            admin.click("#issue-token")
            token = admin.locator("#device-token").inner_text().strip()
            assert len(token) >= 40
            shot(admin, "device-token")

            # publish
            admin.goto(url + "/gallery")
            admin.click("#publish")
            expect(admin.locator("#published")).to_have_text("Published gallery version 1")
            expect(admin.locator("#announced")).to_contain_text("Announced")
            shot(admin, "published")

            # the field unit: sync with its credentials, identify a probe, send the result over MQTT
            unit = _unit_config(tmp, url, token, stack)
            r = edgeface("--config", str(unit), "gallery", "sync", "--json")
            assert r.returncode == 0, r.stdout + r.stderr
            assert json.loads(r.stdout)["installed"] == 1
            r = subprocess.run(
                [
                    sys.executable,
                    str(Path(__file__).parent / "field_unit.py"),
                    "--config",
                    str(unit),
                    str(IMAGES / "obama2.jpg"),
                ],
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
            )
            assert r.returncode == 0, r.stderr
            result = json.loads(r.stdout.strip().splitlines()[-1])
            assert result["decision"] == "match" and result["candidates"][0][0] == "obama", result
            r = edgeface("--config", str(unit), "outbox", "drain", "--until-empty", "--timeout", "60")
            assert r.returncode == 0, r.stdout + r.stderr

            # a reviewer sees the candidate with both faces and confirms it
            rev = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
            rev.set_default_timeout(60_000)
            rev.goto(url + "/login")
            rev.fill("#username", "rita")
            rev.fill("#password", PASSWORD)
            rev.click("#login")
            expect(rev.locator("h1")).to_contain_text("Review queue")
            deadline = time.monotonic() + 60
            while rev.locator("#queue a.open").count() == 0 and time.monotonic() < deadline:
                time.sleep(0.5)
                rev.reload()
            expect(rev.locator("#queue tr.status-pending")).to_have_count(1)
            expect(rev.locator("#queue")).to_contain_text("Barack Obama")
            shot(rev, "queue")
            rev.click("#queue a.open")
            expect(rev.locator("#device")).to_have_text("unit-1")
            rev.wait_for_load_state("load")  # the images have loaded or failed (aligned chips take a moment)
            for sel in ("#probe", "img.enrolled >> nth=0"):
                loc = rev.locator(sel)
                expect(loc).to_be_visible()
                assert loc.evaluate("img => img.complete && img.naturalWidth > 0"), f"{sel} did not load"
            expect(rev.locator("figure.candidate").first).to_contain_text("Barack Obama")
            shot(rev, "candidate")
            rev.fill("#comment", "Same person as the enrolled portrait.")
            rev.click("#confirm")
            expect(rev.locator("#status")).to_have_text("confirmed")
            expect(rev.locator("#history")).to_contain_text("rita")
            shot(rev, "confirmed")

            # the audit log verifies, in the browser and on the command line
            rev.goto(url + "/audit")
            expect(rev.locator("#chain")).to_contain_text("Chain verified")
            for action in ("login.ok", "enroll.image", "gallery.publish", "device.credential", "review.confirm"):
                expect(rev.locator("#audit")).to_contain_text(action)
            shot(rev, "audit")
            rev.goto(url + "/fleet")
            expect(rev.locator("#fleet")).to_contain_text("unit-1")
            shot(rev, "fleet")
        finally:
            browser.close()
    r = edgeface("--config", str(stack["config"]), "audit", "verify")
    assert r.returncode == 0 and r.stdout.startswith("ok:"), r.stdout + r.stderr
    print(f"\nscreenshots: {shots} ({len(list(shots.glob('*.png')))} files)")


def _unit_config(tmp: Path, url: str, token: str, stack: dict[str, Any]) -> Path:
    unit_dir = tmp / "unit"
    unit_dir.mkdir()
    token_file = unit_dir / "gallery-token"
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    key = unit_dir / "device.key"
    r = edgeface("gallery", "keygen", "--device-key", str(key))
    assert r.returncode == 0, r.stderr
    return toml(
        unit_dir / "unit.toml",
        {
            "device": {"id": "unit-1"},
            "gallery": {
                "dir": unit_dir / "gallery",
                "trusted_keys": [str(stack["keys"] / "signing.pub")],
                "key_file": key,
                "sync_url": url + "/bundles/",
                "sync_password_file": token_file,
                "allow_insecure_http": True,
            },  # the token over http:// to loopback: a lab setting
            "outbox": {"path": unit_dir / "outbox.sqlite3"},
            "mqtt": {"host": "127.0.0.1", "port": stack["broker"].port, "tls": False, "include_crop": True},
        },
    )
