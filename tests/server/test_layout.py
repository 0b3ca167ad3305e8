"""Layout in a real browser: dark mode follows the system setting, the review queue and a review page fit
a 390 px phone without horizontal scrolling, and timestamps are shown in the reviewer's own time zone,
named on the page. Screenshots under tests/artifacts/layout/.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from .review_browser import CHROMIUM, CHROMIUM_ARGS, review_server, shots_dir

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


def _luminance(css: str) -> float:
    r, g, b = (int(v) for v in re.findall(r"\d+", css)[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


def _width(page: Any) -> int:
    return int(page.evaluate("Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"))


@pytest.mark.parametrize("scheme", ["dark", "light"])
def test_dark_mode_and_a_phone_wide_review_page(tmp_path: Path, lfw_root: Path, scheme: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    shots = shots_dir(f"layout-{scheme}")
    with review_server(tmp_path, lfw_root, 3) as srv, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            for name, viewport in (("phone", PHONE), ("desktop", DESKTOP)):
                ctx = browser.new_context(
                    viewport=viewport, color_scheme=scheme, timezone_id="Europe/Berlin", locale="en-GB"
                )
                page = ctx.new_page()
                page.set_default_timeout(30_000)
                srv.login(page)
                bg = _luminance(page.evaluate("getComputedStyle(document.body).backgroundColor"))
                fg = _luminance(page.evaluate("getComputedStyle(document.body).color"))
                if scheme == "dark":
                    assert bg < 0.2 < 0.7 < fg, (bg, fg)  # dark page, light text
                else:
                    assert fg < 0.2 < 0.7 < bg, (bg, fg)
                expect(page.locator("#tz-note")).to_contain_text("Europe/Berlin")
                # captured times rewritten from UTC into the reviewer's zone (CET is UTC+1 in November)
                when = page.locator("#queue time.ts").first
                expect(when).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (CET|CEST|GMT\+1|GMT\+2)$"))
                assert "UTC" in str(when.get_attribute("title"))
                page.screenshot(path=str(shots / f"{name}-queue.png"), full_page=True)
                if name == "phone":
                    assert _width(page) <= PHONE["width"], f"queue is {_width(page)} px wide on a 390 px phone"
                page.locator("#queue a.open").first.click()
                expect(page.locator("#decide")).to_be_visible()
                expect(page.locator("#confirm")).to_be_visible()
                page.screenshot(path=str(shots / f"{name}-review.png"), full_page=True)
                if name == "phone":
                    assert _width(page) <= PHONE["width"], f"review page is {_width(page)} px wide on a 390 px phone"
                    box = page.locator("#confirm").bounding_box()
                    assert box and box["x"] + box["width"] <= PHONE["width"], (
                        box
                    )  # reachable without scrolling sideways
                ctx.close()
        finally:
            browser.close()
