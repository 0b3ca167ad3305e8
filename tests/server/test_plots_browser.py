"""The plots page in a real browser (Playwright driving Debian's Chromium, headless) against the app served
from this process: light and dark colour schemes, a 390 px phone without horizontal scroll, and a device
name that would be markup if it were not escaped. Screenshots are kept under tests/artifacts/server-plots/."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgeface.server.ingest import DbResultStore

from .conftest import ARTIFACTS, PASSWORD, serve_in_thread
from .test_browser import CHROMIUM, CHROMIUM_ARGS
from .test_plots import doc, seed

EVIL = '<img src=x onerror="alert(1)">&unit'


@pytest.fixture
def served(app: Any, db: Any, users: Any) -> Iterator[str]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run installs it)")
    seed(db, users["reviewer"].id, time.time())
    DbResultStore(db).add([doc(EVIL, [0.2]), doc(EVIL, [0.3])])
    with serve_in_thread(app) as url:
        yield url


def test_plots_page_in_a_browser(served: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    shots = ARTIFACTS / "server-plots"
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    dialogs: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            for name, opts in (
                ("light", {"viewport": {"width": 1280, "height": 900}, "color_scheme": "light"}),
                ("dark", {"viewport": {"width": 1280, "height": 900}, "color_scheme": "dark"}),
                ("phone-390", {"viewport": {"width": 390, "height": 844}, "color_scheme": "light"}),
            ):
                page = browser.new_context(**opts).new_page()
                page.set_default_timeout(60_000)
                page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
                errors: list[str] = []
                page.on("console", lambda m, errors=errors: errors.append(m.text) if m.type == "error" else None)
                page.goto(served + "/plots")
                page.fill("#username", "rita")
                page.fill("#password", PASSWORD)
                page.click("#login")
                expect(page.locator("h1")).to_contain_text("Plots")
                # four kinds of chart drawn, each bar with its count
                expect(page.locator("#plot-scores svg line.threshold")).to_have_count(1)
                expect(page.locator("#plot-devices svg")).to_have_count(3)
                # versions 7 and 6, and "no gallery" for the unit that only sent results
                expect(page.locator("#plot-fleet svg rect.bar")).to_have_count(3)
                assert page.locator("#plot-outcomes svg rect.bar").count() == 3
                # the device name is shown as text, not run as markup
                titles = page.locator("#plot-devices svg > title").all_text_contents()
                assert f"{EVIL}: results per day (UTC)" in titles
                # the charts' text follows the page's colour (currentColor), in dark mode too
                body = page.evaluate("getComputedStyle(document.body).color")
                tick = page.evaluate("getComputedStyle(document.querySelector('#plot-scores svg text.tick')).fill")
                assert tick == body, (name, tick, body)
                bar = page.evaluate("getComputedStyle(document.querySelector('#plot-scores rect.s-confirmed')).fill")
                assert bar not in ("rgb(0, 0, 0)", "none"), bar  # plots.css applied (the CSP let it load)
                if name == "phone-390":
                    width = page.evaluate("document.querySelector('#plot-scores').scrollWidth")
                    assert width <= 390, f"the plots overflow a 390 px phone: {width} px"
                page.screenshot(path=str(shots / f"plots-{name}.png"), full_page=True)
                assert not [e for e in errors if "Content Security Policy" in e], errors
                page.context.close()
        finally:
            browser.close()
    assert not dialogs, dialogs
    print(f"\nscreenshots: {shots}")
