"""Review at speed, in a real browser: a reviewer works through ten pending matches with the keyboard
alone (open from the queue, choose a candidate, confirm / reject / unknown, each decision moving on to
the next pending match; next and previous without deciding), and the decisions recorded are the ones
the keys asked for. Prints the seconds per decision of the keyboard path (no assertion on time) and
keeps it, with the screenshots, under tests/artifacts/review-speed/.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select

from edgeface.server.tables import results, reviews

from .review_browser import CHROMIUM, CHROMIUM_ARGS, review_server, shots_dir

DECISIONS = 10
# key presses per item: (candidate key or None, verdict key); every verdict and a non-first candidate
PLAN = [(None, "c"), (None, "r"), ("2", "c"), (None, "u"), (None, "r"), ("3", "c"), (None, "r"), (None, "u"),
        (None, "c"), (None, "r")]  # fmt: skip
VERDICT = {"c": "confirm", "r": "reject", "u": "unknown"}


def test_decide_and_next_with_the_keyboard_through_ten_items(tmp_path: Path, lfw_root: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    shots = shots_dir("review-speed")
    with review_server(tmp_path, lfw_root, DECISIONS + 2) as srv, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
            page.set_default_timeout(30_000)
            srv.login(page)
            expect(page.locator("#queue tr.result")).to_have_count(DECISIONS + 2)
            expect(page.locator("#pending-count")).to_have_text(str(DECISIONS + 2))  # the header's count
            thumbs = page.locator("#queue img.qthumb")
            expect(thumbs).to_have_count(DECISIONS + 2)
            assert thumbs.first.evaluate("i => i.complete && i.naturalWidth > 0"), "probe thumbnail did not load"
            page.screenshot(path=str(shots / "01-queue.png"), full_page=True)

            # the queue: j selects the first row, Enter opens it
            page.keyboard.press("j")
            expect(page.locator("#queue tr.result.current")).to_have_count(1)
            page.keyboard.press("Enter")
            expect(page.locator("#decide")).to_be_visible()
            first = _rid(page)
            # next and previous without deciding
            page.keyboard.press("j")
            expect(page.locator("h1 .rid")).not_to_have_text(first)
            page.keyboard.press("k")
            expect(page.locator("h1 .rid")).to_have_text(first)
            expect(page.locator("#shortcuts")).to_contain_text("confirm")
            page.screenshot(path=str(shots / "02-review-page.png"), full_page=True)

            asked: dict[str, tuple[str, str | None]] = {}
            t0 = time.perf_counter()
            for i, (cand, verdict) in enumerate(PLAN):
                rid = _rid(page)
                expect(page.locator("#status")).to_have_text("pending")
                chosen = None
                if cand:
                    page.keyboard.press(cand)
                    chosen = page.locator(f'input[name="identity"][data-key="{cand}"]').get_attribute("value")
                    expect(page.locator(f'input[name="identity"][data-key="{cand}"]')).to_be_checked()
                elif verdict == "c":
                    chosen = page.locator('input[name="identity"][data-key="1"]').get_attribute("value")
                asked[rid] = (VERDICT[verdict], chosen)
                page.keyboard.press(verdict)
                expect(page.locator("#decided")).to_contain_text(rid)  # moved on: the note names the one decided
                expect(page.locator("h1 .rid")).not_to_have_text(rid)
                if i == 2:
                    page.screenshot(path=str(shots / "03-after-a-decision.png"), full_page=True)
            elapsed = time.perf_counter() - t0
            page.screenshot(path=str(shots / "04-after-ten.png"), full_page=True)
            expect(page.locator("#nav-pending")).to_have_text("2")
        finally:
            browser.close()

        engine = create_engine(srv.db_url)
        with engine.connect() as conn:
            got = {r.result_id: (r.verdict, r.identity_id) for r in conn.execute(select(reviews))}
            statuses = dict(conn.execute(select(results.c.id, results.c.review_status)).all())
        engine.dispose()
    assert got == asked, (got, asked)  # every key did what it said, on the item shown, once
    assert sum(s == "pending" for s in statuses.values()) == 2
    figure = {
        "decisions": DECISIONS,
        "seconds": round(elapsed, 3),
        "seconds_per_decision": round(elapsed / DECISIONS, 3),
        "path": "keyboard only: optional candidate key, then c/r/u; page moves to the next pending match",
        "browser": "Debian chromium, headless, Playwright; server on loopback, SQLite",
    }
    (shots / "figures.json").write_text(json.dumps(figure, indent=1) + "\n")
    print(f"\nreview speed: {figure['seconds_per_decision']} s per decision over {DECISIONS} (keyboard); {shots}")


def _rid(page: Any) -> str:
    return str(page.locator("h1 .rid").inner_text()).strip()
