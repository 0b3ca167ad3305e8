"""Both scores in front of the reviewer: a result decided on the gallery's normalised score shows each
candidate's normalised score beside its raw cosine, the space and threshold the decision used, and how many
frames were fused; a result from a unit before normalisation looks as it always did. The export carries the
same fields, and the current server stores results with and without them (real broker, the ingest's own
validation). The last test opens both pages in a real Chromium under the server's CSP."""

from __future__ import annotations

import csv
import io
import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from edgeface.mqtt import payloads, topics
from edgeface.server.ingest import DbResultStore
from edgeface.server.tables import rejected, results
from edgeface.testing.mqttload import sample_result, wait_for

from .conftest import PASSWORD, Browser, serve_in_thread
from .test_ingest import _publisher, _worker

CHROMIUM = "/usr/bin/chromium"


def normalised_result(seed: int = 4, *, frames: int = 5) -> dict[str, Any]:
    """A match decided on normalised scores, as a unit with a normalised gallery and track fusion sends it:
    candidates ordered by their normalised score (not by cosine: the second has the higher cosine)."""
    doc = sample_result("unit-n", random.Random(seed), match_share=1.0)
    doc["candidates"] = [
        {"identity_id": "jane", "score": 0.612345, "normalised": 4.25},
        {"identity_id": "joe", "score": 0.655, "normalised": 1.5},
        {"identity_id": "ann", "score": 0.31, "normalised": -0.75},
    ]
    doc.update(score_space="normalised", threshold=3.125, frames_fused=frames)
    payloads.check(doc, "result")  # what a unit sends: the contract holds
    return doc


def raw_result(seed: int = 5) -> dict[str, Any]:
    """A result from a unit before normalisation and track fusion: neither field, cosine threshold."""
    doc = sample_result("unit-r", random.Random(seed), match_share=1.0)
    assert "score_space" not in doc and "frames_fused" not in doc and "normalised" not in doc["candidates"][0]
    return doc


def test_review_page_shows_both_scores_for_a_normalised_result(db: Any, as_reviewer: Browser) -> None:
    doc = normalised_result()
    DbResultStore(db).add([doc])
    page = as_reviewer.get(f"/review/{doc['id']}").get_data(as_text=True)
    decision = re.search(r'<span id="decision">([^<]*)</span>', page)
    assert decision and decision.group(1) == "match on the normalised score at threshold 3.125"
    assert 'id="score-space"' in page and "at threshold 3.125" in page
    assert re.findall(r'<b class="normalised">([^<]*)</b>', page) == ["4.250", "1.500", "-0.750"]
    assert re.findall(r'<span class="score">([^<]*)</span>', page) == ["0.612", "0.655", "0.310"]
    assert not re.findall(r'<b class="score">', page)  # the cosine is shown, not presented as decided on
    assert re.search(r'<span id="frames-fused">fused from 5 frames</span>', page)
    assert "(normalised 4.250, cosine 0.612)" in page  # the candidate choice in the decision form

    queue = as_reviewer.get("/review?status=all&decision=all").get_data(as_text=True)
    assert "fused from 5 frames" in queue
    assert re.search(r'<td class="normalised"><b>4\.250</b> <span class="muted">decided on, at 3\.125</span>', queue)
    assert '<td class="score">0.612</td>' in queue


def test_review_page_of_a_raw_result_is_unchanged(db: Any, as_reviewer: Browser) -> None:
    doc = raw_result()
    DbResultStore(db).add([doc])
    page = as_reviewer.get(f"/review/{doc['id']}").get_data(as_text=True)
    decision = re.search(r'<span id="decision">([^<]*)</span>', page)
    assert decision and decision.group(1) == "match at threshold 0.6"
    shown = re.findall(r'score <b class="score">([^<]*)</b>', page)
    assert shown == [f"{c['score']:.3f}" for c in doc["candidates"]]
    for absent in ('class="normalised"', 'id="score-space"', 'id="frames-fused"', "normalised score"):
        assert absent not in page
    queue = as_reviewer.get("/review?status=all&decision=all").get_data(as_text=True)
    assert '<td class="normalised">—</td>' in queue and "fused from" not in queue


def test_raw_decision_shows_the_normalised_score_it_did_not_use(db: Any, as_reviewer: Browser) -> None:
    """A unit with gallery.threshold set decides on cosine even with a normalised gallery: the cosine is
    bold (decided on), the normalised score beside it; one frame is said as such."""
    doc = sample_result("unit-c", random.Random(6), match_share=1.0)
    for c, n in zip(doc["candidates"], (2.0, 1.0, 0.5, 0.25, 0.0), strict=True):
        c["normalised"] = n
    doc["frames_fused"] = 1
    payloads.check(doc, "result")
    DbResultStore(db).add([doc])
    page = as_reviewer.get(f"/review/{doc['id']}").get_data(as_text=True)
    assert re.search(r'<span id="decision">match at threshold 0\.6</span>', page)
    top = doc["candidates"][0]["score"]
    assert f'cosine <b class="score">{top:.3f}</b>, normalised <span class="normalised">2.000</span>' in page
    assert '<span id="frames-fused">one frame</span>' in page


def test_export_carries_the_score_space_threshold_and_frames(db: Any, as_reviewer: Browser) -> None:
    new, old = normalised_result(), raw_result()
    DbResultStore(db).add([new, old])
    j = as_reviewer.get("/review/export?format=json&status=all&decision=all").get_json()
    by_id = {x["id"]: x for x in j["results"]}
    assert {k: by_id[new["id"]][k] for k in ("top_score", "top_normalised", "score_space", "threshold")} == {
        "top_score": 0.612345,
        "top_normalised": 4.25,
        "score_space": "normalised",
        "threshold": 3.125,
    }
    assert by_id[new["id"]]["frames_fused"] == 5
    assert {k: by_id[old["id"]][k] for k in ("top_normalised", "score_space", "threshold", "frames_fused")} == {
        "top_normalised": None,
        "score_space": "cosine",
        "threshold": 0.6,
        "frames_fused": None,
    }
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO(as_reviewer.get("/review/export?status=all").text))}
    assert rows[new["id"]]["score_space"] == "normalised" and rows[new["id"]]["top_normalised"] == "4.25"
    assert rows[new["id"]]["frames_fused"] == "5" and rows[old["id"]]["frames_fused"] == ""


def test_current_server_stores_results_with_and_without_the_new_fields(db: Any, broker: Any) -> None:
    """Units are upgraded after the server (README, upgrade notes): the server takes both generations of
    results; a field it does not know yet is refused, which is why the server goes first."""
    w = _worker(db, broker.port, "ingest-scores")
    pub = _publisher(broker.port)
    try:
        new, old = normalised_result(), raw_result()
        unknown = {**raw_result(7), "from_the_future": 1}
        for d in (new, old):
            pub.publish(topics.results_topic(d["device_id"]), payloads.encode_result(d), qos=1).wait_for_publish(10)
        body = json.dumps(unknown).encode()
        pub.publish(topics.results_topic(unknown["device_id"]), body, qos=1).wait_for_publish(10)
        store = DbResultStore(db)
        assert wait_for(lambda: store.count() >= 2 and w.stats.received >= 3, 30)

        def rejects() -> int:
            with db.read() as conn:
                return int(conn.execute(select(func.count()).select_from(rejected)).scalar_one())

        assert wait_for(lambda: rejects() >= 1, 30)
        with db.read() as conn:
            stored = {r.id: r for r in conn.execute(select(results))}
            why = conn.execute(select(rejected.c.error)).scalar_one()
        assert set(stored) == {new["id"], old["id"]}
        assert json.loads(stored[new["id"]].payload) == new  # kept whole: nothing dropped
        assert stored[new["id"]].top_score == pytest.approx(0.612345)  # the raw cosine, as before
        assert "from_the_future" in why
    finally:
        pub.loop_stop()
        w.stop()


@pytest.fixture
def live(app: Any, users: Any) -> Iterator[str]:
    """The app served over real HTTP (one thread), for the browser."""
    with serve_in_thread(app) as url:
        yield url


def test_both_scores_in_a_real_browser(db: Any, live: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    from .test_browser import CHROMIUM_ARGS

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run installs it)")
    new, old = normalised_result(), raw_result()
    DbResultStore(db).add([new, old])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context().new_page()
            page.set_default_timeout(30_000)
            blocked: list[str] = []
            page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
            page.goto(live + "/login")
            page.fill("#username", "rita")
            page.fill("#password", PASSWORD)
            page.click("#login")
            expect(page.locator("h1")).to_contain_text("Review queue")
            page.goto(live + f"/review/{new['id']}")
            expect(page.locator("#decision")).to_have_text("match on the normalised score at threshold 3.125")
            expect(page.locator("#frames-fused")).to_have_text("fused from 5 frames")
            first = page.locator("figure.candidate").first
            expect(first).to_contain_text("normalised 4.250, cosine 0.612")
            expect(first.locator("b.normalised")).to_be_visible()
            page.goto(live + f"/review/{old['id']}")
            expect(page.locator("#decision")).to_have_text("match at threshold 0.6")
            expect(page.locator("figure.candidate").first).to_contain_text(f"score {old['candidates'][0]['score']:.3f}")
            assert page.locator(".normalised, #frames-fused, #score-space").count() == 0
            csp = page.evaluate("() => document.querySelectorAll('script:not([src]), [style]').length")
            assert csp == 0  # nothing inline the strict CSP would have to allow
            assert not blocked, blocked
        finally:
            browser.close()
