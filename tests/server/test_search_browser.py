"""Search by photo in a real browser (Playwright driving Debian's Chromium, headless) against the app served
from this process: an administrator enrolled and published two public-domain portraits; a reviewer picks
another photo of one of them and sees that identity as the lead, chips side by side. Screenshots are kept
under tests/artifacts/server-search/."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgeface.gallery.signing import generate_keypair

from .conftest import ARTIFACTS, PASSWORD, Browser, serve_in_thread
from .test_browser import CHROMIUM, CHROMIUM_ARGS
from .test_gallery_admin import IMAGES, _enroll


@pytest.fixture
def served(app: Any, config: Any, as_admin: Browser) -> Iterator[str]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run installs it)")
    generate_keypair(config.server.signing_key, config.server.signing_key.with_suffix(".pub"))
    for ident, photo in (("obama", "obama.jpg"), ("biden", "biden.jpg")):
        assert _enroll(as_admin, ident, IMAGES / photo).status_code == 200
    assert as_admin.post("/gallery/publish").status_code == 200
    with serve_in_thread(app) as url:
        yield url


def test_search_by_photo_in_a_browser(served: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    shots = ARTIFACTS / "server-search"
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            page.set_default_timeout(60_000)
            page.goto(served + "/search")
            page.fill("#username", "rita")
            page.fill("#password", PASSWORD)
            page.click("#login")
            expect(page.locator("h1")).to_contain_text("Search by photo")
            page.set_input_files("#photo", str(IMAGES / "obama2.jpg"))
            page.screenshot(path=str(shots / "01-search-form.png"), full_page=True)
            page.click("#search")
            expect(page.locator("#search-summary")).to_contain_text("1 face in the photo")
            face = page.locator("section.search-face")
            expect(face).to_have_count(1)
            expect(face).to_have_class("card search-face verdict-match")
            expect(face.locator("figure.candidate.is-match")).to_contain_text("obama")
            # the chips are shown (data: images pass the CSP) at one size
            sizes = page.evaluate(
                "[...document.querySelectorAll('.chips img')].map(i => [i.naturalWidth > 0, i.clientWidth, i.clientHeight])"
            )
            assert len(sizes) == 3 and all(ok for ok, _, _ in sizes), sizes
            assert {(w, h) for _, w, h in sizes} == {(112, 112)}, sizes
            page.screenshot(path=str(shots / "02-search-result.png"), full_page=True)
        finally:
            browser.close()
    print(f"\nscreenshots: {shots}")
