"""Correct and learn in a real browser (Playwright driving Debian's Chromium, headless) against the app served
from this process, two-person rule on: two reviewers confirm a probe as an identity the unit did not offer
(found with the review page's search box; the second agrees with the first's choice); an administrator adds
the confirmed probe to that person's gallery images and publishes; the signed bundle holds the image with its
provenance. Screenshots are kept under tests/artifacts/review-learn/."""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from edgeface.config import Config
from edgeface.gallery.bundle import verify_bundle
from edgeface.gallery.signing import generate_keypair, load_public_key
from edgeface.mqtt import payloads
from edgeface.server.ingest import DbResultStore
from edgeface.server.review import decide
from edgeface.server.tables import images, results, reviews
from edgeface.testing.mqttload import sample_result

from .conftest import ARTIFACTS, PASSWORD, Browser, serve_in_thread, server_config
from .test_browser import CHROMIUM, CHROMIUM_ARGS
from .test_gallery_admin import IMAGES, _enroll

SHOTS = ARTIFACTS / "review-learn"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return server_config(tmp_path, **{"server.two_person_rule": "true"})


@pytest.fixture
def served(app: Any, config: Config, db: Any, as_admin: Browser) -> Iterator[tuple[str, str]]:
    """The app over HTTP with obama and biden enrolled, and a match whose probe is another photo of obama
    while the unit's candidates are people this server does not know (its gallery came from elsewhere)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run installs it)")
    generate_keypair(config.server.signing_key, config.server.signing_key.with_suffix(".pub"))
    for ident, photo in (("obama", "obama.jpg"), ("biden", "biden.jpg")):
        assert _enroll(as_admin, ident, IMAGES / photo).status_code == 200
    rgb = np.asarray(Image.open(IMAGES / "obama2.jpg").convert("RGB"))
    doc = sample_result("unit-7", random.Random(16), match_share=1.0, crop=payloads.crop_payload(rgb, max_bytes=16384))
    assert "obama" not in [c["identity_id"] for c in doc["candidates"]]
    DbResultStore(db).add([doc])
    with serve_in_thread(app) as url:
        yield url, doc["id"]


def _login(browser: Any, url: str, user: str) -> Any:
    from playwright.sync_api import expect

    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.set_default_timeout(60_000)
    page.goto(url + "/login")
    page.fill("#username", user)
    page.fill("#password", PASSWORD)
    page.click("#login")
    expect(page.locator("#login")).to_have_count(0)
    return page


def _status(db: Any, rid: str) -> str:
    with db.read() as conn:
        return str(conn.execute(select(results.c.review_status).where(results.c.id == rid)).scalar_one())


def test_confirm_as_a_non_candidate_found_with_the_search_box(served: tuple[str, str], db: Any) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, rid = served
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = _login(browser, url, "rita")
            page.goto(f"{url}/review/{rid}")
            expect(page.locator("label.other.found")).to_have_count(0)
            page.fill("#who", "OBA")  # part of the id, any case
            page.click("#search-identities")
            expect(page.locator("#found-count")).to_contain_text("1 found")
            found = page.locator("label.other.found")
            expect(found).to_have_count(1)
            expect(found).to_contain_text("not a candidate")
            expect(found.locator("input")).to_be_checked()  # the search's hit is the choice, not candidate 1
            page.screenshot(path=str(SHOTS / "01-search-found.png"), full_page=True)
            page.click("#confirm")
            expect(page.locator("#decided")).to_be_visible()
            assert _status(db, rid) == "awaiting_second"
            # the second reviewer is offered the first one's non-candidate choice, and agrees
            page2 = _login(browser, url, "rob")
            page2.goto(f"{url}/review/{rid}")
            proposed = page2.locator("label.other.proposed")
            expect(proposed).to_contain_text("confirmed by an earlier reviewer")
            proposed.locator("input").check()
            page2.screenshot(path=str(SHOTS / "02-second-reviewer.png"), full_page=True)
            page2.click("#confirm")
            expect(page2.locator("#decided")).to_be_visible()
            page2.goto(f"{url}/review/{rid}")
            expect(page2.locator("#status")).to_have_text("confirmed")
            expect(page2.locator("#learn-admin")).to_contain_text("An administrator can add this probe")
            page2.screenshot(path=str(SHOTS / "03-confirmed.png"), full_page=True)
        finally:
            browser.close()
    with db.read() as conn:
        confirmed = conn.execute(
            select(reviews.c.identity_id).where(reviews.c.result_id == rid, reviews.c.verdict == "confirm")
        ).all()
    assert [r.identity_id for r in confirmed] == ["obama", "obama"]


def test_add_a_confirmed_probe_and_find_it_in_the_next_published_bundle(
    served: tuple[str, str], config: Config, db: Any, users: Any
) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, rid = served
    with db.write() as conn:  # the reviewers' part is the test above's; here it is the administrator's
        decide(conn, rid, users["reviewer"], "confirm", "obama", "", two_person=True)
        decide(conn, rid, users["reviewer2"], "confirm", "obama", "", two_person=True)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = _login(browser, url, "ada")
            page.goto(url + "/gallery")
            page.click("#learn-link a")
            row = page.locator(f"#learn-{rid}")
            expect(row).to_contain_text("obama")
            expect(row).to_contain_text("rita, rob")
            assert page.evaluate("document.querySelector('#learnable img.thumb').naturalWidth") > 0
            row.locator("input[name=consent]").fill("public domain portrait (tests/images/PROVENANCE.md)")
            page.screenshot(path=str(SHOTS / "04-learn-list.png"), full_page=True)
            row.locator("button").click()
            expect(page.locator("#learnt")).to_contain_text("Added to obama's gallery images")
            expect(page.locator("#learnt-source")).to_contain_text(f"probe of result {rid}")
            page.screenshot(path=str(SHOTS / "05-learnt.png"), full_page=True)
            page.goto(url + "/gallery")
            page.click("#publish")
            expect(page.locator("#published")).to_contain_text("Published gallery version 1")
            page.screenshot(path=str(SHOTS / "06-published.png"), full_page=True)
        finally:
            browser.close()
    with db.read() as conn:
        img = conn.execute(select(images).where(images.c.result_id == rid)).one()
    bundle = config.server.data_dir / "publish" / config.models.embedder / "v0000000001"
    vb = verify_bundle(bundle, [load_public_key(config.server.signing_key.with_suffix(".pub"))])
    entries = [json.loads(x) for x in (bundle / "entries.ndjson").read_text().splitlines()]
    learnt = [e for e in entries if e["image"] == img.sha256]
    assert vb.manifest.count == 3 and len(entries) == 3  # obama, biden and the learnt probe
    assert len(learnt) == 1 and learnt[0]["identity"] == "obama" and learnt[0]["enrolled_by"] == "ada"
    assert f"probe of result {rid}" in learnt[0]["source"] and "by rita, rob at" in learnt[0]["source"]
    print(f"\nscreenshots: {SHOTS}")
