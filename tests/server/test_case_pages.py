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
from .test_migrations import postgres  # noqa: F401  (the module's PostgreSQL cluster fixture)


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
    queue = as_reviewer.get("/review?status=all&decision=all").get_data(as_text=True)
    assert queue.count('<td class="case"><a href="/cases/CASE%207/a">CASE 7/a</a></td>') == 3
    assert queue.count('<td class="case">—</td>') == 2
    html = as_reviewer.get("/cases/BODY-1").get_data(as_text=True)
    assert '<span id="case-tag">BODY-1</span>' in html and f"/review/{b[0]['id']}" in html
    assert '1.50000, 2.50000 <span class="muted">(static)</span>' in html
    assert as_reviewer.get("/cases/NO-SUCH-CASE").status_code == 404


def test_cases_need_a_reviewer(db: Any, app: Any) -> None:
    assert Browser(app).get("/cases", headers={"Accept": "text/html"}).status_code in (302, 401, 403)


def test_cases_on_postgresql(postgres: str, config: Any) -> None:  # noqa: F811
    """The tag is read with PostgreSQL's json_extract_path_text there (SQLite: json_extract)."""
    from sqlalchemy import text

    from edgeface.server.app import create_app
    from edgeface.server.db import Database

    from .conftest import make_user

    db = Database(postgres)
    try:
        with db.write() as conn:  # the module's cluster may be shared: start from an empty schema
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        db.migrate()
        app = create_app(config, db=db, migrate=False)
        app.testing = True
        make_user(db, "rita", "reviewer")
        b = Browser(app)
        assert b.login("rita").status_code == 302
        a, other = tagged(40, "BODY-PG", "barcode"), tagged(41, "BODY-X", "command")
        DbResultStore(db).add([a, other, tagged(42, None)])
        assert sorted(c["tag"] for c in b.get("/cases?format=json").get_json()["cases"]) == ["BODY-PG", "BODY-X"]
        assert [r["id"] for r in b.get("/cases/BODY-PG?format=json").get_json()["results"]] == [a["id"]]
    finally:
        db.dispose()


def test_export_carries_case_and_place_sources(db: Any, as_reviewer: Browser) -> None:
    doc = tagged(50, "BODY-E", "folder", {"lat": 3.0, "lon": 4.0, "source": "gpsd"})
    old = tagged(51, None, location={"lat": 5.0, "lon": 6.0})  # a unit before case and place
    DbResultStore(db).add([doc, old])
    rows = {
        r["id"]: r for r in as_reviewer.get("/review/export?format=json&status=all&decision=all").get_json()["results"]
    }
    keys = ("case", "case_source", "lat", "lon", "location_source")
    assert {k: rows[doc["id"]][k] for k in keys} == dict(zip(keys, ("BODY-E", "folder", 3.0, 4.0, "gpsd"), strict=True))
    assert {k: rows[old["id"]][k] for k in keys} == dict(zip(keys, (None, None, 5.0, 6.0, None), strict=True))
    csv_text = as_reviewer.get("/review/export?format=csv&status=all&decision=all").get_data(as_text=True)
    assert "case,case_source,lat,lon,location_source" in csv_text.splitlines()[0]
