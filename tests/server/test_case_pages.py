"""Cases at the centre: the review page shows a result's case tag (and where the unit got it) and its place
(and its source); /cases lists every tag with its counts; /cases/<tag> lists exactly that case's results,
in HTML and JSON; results from units before case and place look as they did."""

from __future__ import annotations

import random
import re
from typing import Any

from edgeface.mqtt import payloads
from edgeface.server.ingest import DbResultStore
from edgeface.testing.mqttload import sample_result

from .conftest import Browser


def tagged(
    seed: int, tag: str | None, source: str = "qrcode", location: dict[str, Any] | None = None
) -> dict[str, Any]:
    doc = sample_result("unit-c", random.Random(seed), match_share=1.0)
    if tag is not None:
        doc["case"] = {"tag": tag, "source": source}
    if location is not None:
        doc["location"] = location
    payloads.check(doc, "result")  # what a unit sends follows the contract
    return doc


def test_review_page_shows_case_and_place_with_their_sources(db: Any, as_reviewer: Browser) -> None:
    doc = tagged(1, "BODY-0042", "qrcode", {"lat": -33.857067, "lon": 151.21, "accuracy_m": 5.0, "source": "exif"})
    DbResultStore(db).add([doc])
    page = as_reviewer.get(f"/review/{doc['id']}").get_data(as_text=True)
    assert re.search(r'<a id="case" href="/cases/BODY-0042">BODY-0042</a>', page)
    assert '<span class="muted" id="case-source">from the QR code in the photo</span>' in page
    assert '<span id="place">-33.85707, 151.21000 (±5 m)</span>' in page
    assert "from the photo&#39;s EXIF GPS" in page


def test_a_result_without_case_or_place_says_so(db: Any, as_reviewer: Browser) -> None:
    doc = tagged(2, None)
    DbResultStore(db).add([doc])
    page = as_reviewer.get(f"/review/{doc['id']}").get_data(as_text=True)
    assert '<span id="case">none given</span>' in page and '<span id="place">not sent</span>' in page
    assert 'id="place-source"' not in page


def test_cases_list_and_one_case_in_html_and_json(db: Any, as_reviewer: Browser) -> None:
    a = [tagged(10 + i, "CASE 7/a", "folder") for i in range(3)]
    b = [tagged(20, "BODY-1", "trigger", {"lat": 1.5, "lon": 2.5, "source": "static"})]
    none = [tagged(30, None), tagged(31, None)]
    DbResultStore(db).add(a + b + none)
    listing = as_reviewer.get("/cases?format=json").get_json()
    assert sorted((c["tag"], c["results"], c["pending"]) for c in listing["cases"]) == [
        ("BODY-1", 1, 1),
        ("CASE 7/a", 3, 3),
    ]
    page = as_reviewer.get("/cases").get_data(as_text=True)
    assert sorted(re.findall(r'<a class="case" href="([^"]+)">([^<]+)</a>', page)) == [
        ("/cases/BODY-1", "BODY-1"),
        ("/cases/CASE%207/a", "CASE 7/a"),
    ]
    one = as_reviewer.get("/cases/CASE%207/a?format=json").get_json()
    assert one["case"] == "CASE 7/a"
    assert sorted(r["id"] for r in one["results"]) == sorted(d["id"] for d in a)
    assert {r["case_source"] for r in one["results"]} == {"folder"}
    html = as_reviewer.get("/cases/BODY-1").get_data(as_text=True)
    assert '<span id="case-tag">BODY-1</span>' in html and f"/review/{b[0]['id']}" in html
    assert '1.50000, 2.50000 <span class="muted">(static)</span>' in html
    assert as_reviewer.get("/cases/NO-SUCH-CASE").status_code == 404


def test_cases_need_a_reviewer(db: Any, app: Any) -> None:
    assert Browser(app).get("/cases", headers={"Accept": "text/html"}).status_code in (302, 401, 403)
