"""The review queue: decisions, the two-person rule, filters, identity search, export, the probe crop."""

from __future__ import annotations

import base64
import csv
import io
import json
import random
import re
from typing import Any

import numpy as np
import pytest
from sqlalchemy import insert, select

from edgeface.bench.mqttload import sample_result
from edgeface.mqtt import payloads
from edgeface.server import audit
from edgeface.server.ingest import DbResultStore
from edgeface.server.review import Filters, ReviewError, decide, list_results
from edgeface.server.tables import identities, results

from .conftest import Browser, add_results, server_config


def _status(db: Any, rid: str) -> str:
    with db.read() as conn:
        return conn.execute(select(results.c.review_status).where(results.c.id == rid)).scalar_one()


def test_confirm_reject_unknown(db: Any, as_reviewer: Browser) -> None:
    docs = add_results(db, 3, match_share=1.0)
    for d, verdict, status in zip(docs, ("confirm", "reject", "unknown"), ("confirmed", "rejected", "unknown")):
        r = as_reviewer.post(f"/review/{d['id']}/decide", {"verdict": verdict, "comment": f"{verdict} it"})
        assert r.status_code == 302
        assert _status(db, d["id"]) == status
    with db.read() as conn:
        acts = [e.action for e in audit.entries(conn)]
        assert audit.verify(conn).ok
    assert {"review.confirm", "review.reject", "review.unknown"} <= set(acts)


def test_confirm_only_a_candidate(db: Any, users: Any) -> None:
    d = add_results(db, 1, match_share=1.0)[0]
    with pytest.raises(ReviewError), db.write() as conn:
        decide(conn, d["id"], users["reviewer"], "confirm", "someone-else", "", two_person=False)
    with pytest.raises(ReviewError), db.write() as conn:
        decide(conn, d["id"], users["reviewer"], "approve", None, "", two_person=False)


def test_two_person_rule(tmp_path: Any, users: Any, db: Any) -> None:
    d = add_results(db, 1, match_share=1.0)[0]
    top = d["candidates"][0]["identity_id"]
    rita, rob = users["reviewer"], users["reviewer2"]
    with db.write() as conn:
        assert decide(conn, d["id"], rita, "confirm", top, "first", two_person=True) == "awaiting_second"
    with pytest.raises(ReviewError, match="second, different reviewer"), db.write() as conn:
        decide(conn, d["id"], rita, "confirm", top, "again", two_person=True)
    with db.write() as conn:  # a second reviewer confirming another candidate does not count
        other = d["candidates"][1]["identity_id"]
        assert decide(conn, d["id"], rob, "confirm", other, "", two_person=True) == "awaiting_second"
    with db.write() as conn:  # a rejection restarts the count
        assert decide(conn, d["id"], rob, "reject", None, "not him", two_person=True) == "rejected"
        assert decide(conn, d["id"], rita, "confirm", top, "", two_person=True) == "awaiting_second"
        assert decide(conn, d["id"], rob, "confirm", top, "agree", two_person=True) == "confirmed"


def test_two_person_rule_through_the_web(tmp_path: Any) -> None:
    from edgeface.server.app import create_app
    from edgeface.server.db import Database

    from .conftest import make_user

    cfg = server_config(tmp_path, **{"server.two_person_rule": "true"})
    db = Database(cfg.server.database_url)
    db.migrate()
    app = create_app(cfg, db=db, migrate=False)
    make_user(db, "rita", "reviewer")
    make_user(db, "rob", "reviewer")
    d = add_results(db, 1, match_share=1.0)[0]
    a, b = Browser(app), Browser(app)
    a.login("rita")
    b.login("rob")
    a.post(f"/review/{d['id']}/decide", {"verdict": "confirm"})
    assert _status(db, d["id"]) == "awaiting_second"
    r = a.post(f"/review/{d['id']}/decide", {"verdict": "confirm"})
    assert "error" in r.headers["Location"] and _status(db, d["id"]) == "awaiting_second"
    b.post(f"/review/{d['id']}/decide", {"verdict": "confirm"})
    assert _status(db, d["id"]) == "confirmed"
    page = b.get(f"/review/{d['id']}").get_data(as_text=True)
    assert "two-person rule on" in page
    db.dispose()


def test_filters_and_identity_search(db: Any, users: Any) -> None:
    rng = random.Random(3)
    docs = [sample_result("unit-a", rng, match_share=1.0) for _ in range(10)]
    docs += [sample_result("unit-b", rng, match_share=0.0) for _ in range(10)]
    docs[0]["candidates"][0]["identity_id"] = "jane.doe"
    docs[0]["captured_at"] = "2020-01-02T10:00:00Z"
    DbResultStore(db).add(docs)
    with db.write() as conn:
        conn.execute(insert(identities).values(id="jane.doe", name="Jane Doe", created_at=0, created_by="t"))
        decide(conn, docs[1]["id"], users["reviewer"], "reject", None, "", two_person=False)
    with db.read() as conn:
        def ids(**kw: Any) -> set[str]:
            return {r.id for r in list_results(conn, Filters(**kw), limit=1000)[0]}

        assert len(ids()) == 9  # pending matches
        assert len(ids(status="all", decision="all")) == 20
        assert ids(status="rejected") == {docs[1]["id"]}
        assert ids(status="all", decision="all", device="unit-b") == {d["id"] for d in docs[10:]}
        assert ids(identity="Jane") == {docs[0]["id"]}  # by name
        assert ids(identity="jane.d") == {docs[0]["id"]}  # by id
        assert ids(date_from="2020-01-01", date_to="2020-01-02") == {docs[0]["id"]}
        hi = ids(status="all", decision="all", min_score=0.8)
        assert hi and all(d["candidates"][0]["score"] >= 0.8 for d in docs if d["id"] in hi)
        assert ids(status="all", decision="all", max_score=0.3) == {
            d["id"] for d in docs if d["candidates"][0]["score"] <= 0.3}


def test_queue_page_filters_and_export(db: Any, as_reviewer: Browser) -> None:
    docs = add_results(db, 5, match_share=1.0)
    docs[0]["candidates"][0]["identity_id"] = "=HYPERLINK(1)"
    DbResultStore(db).add([{**sample_result("unit-z", random.Random(9), match_share=1.0),
                            "candidates": [{"identity_id": "=cmd()", "score": 0.99}]}])
    as_reviewer.post(f"/review/{docs[0]['id']}/decide", {"verdict": "confirm", "comment": "@risky comment"})
    page = as_reviewer.get("/review?status=all&device=unit-a").get_data(as_text=True)
    assert page.count('class="open"') == 5
    r = as_reviewer.get("/review/export?format=csv&status=all")
    assert r.status_code == 200 and "attachment" in r.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    assert len(rows) == 6
    mine = next(x for x in rows if x["id"] == docs[0]["id"])
    assert mine["review_status"] == "confirmed" and mine["last_reviewer"] == "rita"
    assert mine["last_comment"] == "'@risky comment"  # no formula injection into spreadsheets
    assert next(x for x in rows if x["device_id"] == "unit-z")["top_identity"] == "'=cmd()"
    j = as_reviewer.get("/review/export?format=json&status=confirmed").get_json()
    assert [x["id"] for x in j["results"]] == [docs[0]["id"]] and j["filters"]["status"] == "confirmed"
    with db.read() as conn:
        assert [e.action for e in audit.entries(conn, action="results.export")] == ["results.export"] * 2


def test_probe_crop_served_and_shown(db: Any, as_reviewer: Browser) -> None:
    crop = payloads.crop_payload(np.full((80, 60, 3), 128, np.uint8), max_bytes=16384)
    d = sample_result("unit-a", random.Random(5), match_share=1.0, crop=crop)
    DbResultStore(db).add([d])
    page = as_reviewer.get(f"/review/{d['id']}").get_data(as_text=True)
    assert 'id="probe"' in page
    r = as_reviewer.get(f"/review/{d['id']}/crop.jpg")
    assert r.status_code == 200 and r.mimetype == "image/jpeg" and r.data == base64.b64decode(crop["data"])
    other = add_results(db, 1, seed=11)[0]  # no crop sent
    assert as_reviewer.get(f"/review/{other['id']}/crop.jpg").status_code == 404
    assert "no face crop sent" in as_reviewer.get(f"/review/{other['id']}").get_data(as_text=True)


def test_bad_filters_are_400(as_reviewer: Browser) -> None:
    assert as_reviewer.get("/review?min_score=abc").status_code == 400
    assert as_reviewer.get("/review?date_from=31/12/2020").status_code == 400
    assert as_reviewer.get("/review?status=bogus").status_code == 400
    assert as_reviewer.get("/review/export?format=xml").status_code == 400


def test_payload_kept_verbatim(db: Any) -> None:
    d = add_results(db, 1)[0]
    with db.read() as conn:
        stored = conn.execute(select(results.c.payload).where(results.c.id == d["id"])).scalar_one()
    assert json.loads(stored) == d


@pytest.mark.parametrize("junk", [
    "format=json", "format=csv&status=all", "_external=1", "_anchor=x", "_method=POST", "_scheme=javascript",
    "endpoint=accounts.index", "page=2&format=json", "rid=1&values=2", "status=all&_external=1&identity=x",
])
def test_queue_ignores_unknown_query_keys(db: Any, as_reviewer: Browser, junk: str) -> None:
    """Only the known filter keys go into the page's links: keys colliding with url_for's parameters
    (``format`` above all, which the export links set themselves) used to make the queue a 500."""
    add_results(db, 60, match_share=1.0)  # more than one page, so the paging links are built too
    r = as_reviewer.get(f"/review?{junk}")
    assert r.status_code == 200, r.status_code
    page = r.get_data(as_text=True)
    links = re.findall(r'href="([^"]+)"', page)
    export = sorted(x for x in links if x.startswith("/review/export"))
    assert len(export) == 2 and [x.count("format=") for x in export] == [1, 1], export
    assert "format=csv" in export[0] and "format=json" in export[1]
    assert not any("_external" in x or "_anchor" in x or "endpoint=" in x or "#" in x for x in links), links
