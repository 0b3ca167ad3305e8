"""Review at speed, the routes behind the keys: decide-and-next follows the queue's order and wraps round,
next/previous links, the bulk reject (pending results only, each audited, never a confirmation), the
refreshed pending count, pagination and probe thumbnails in the queue."""

from __future__ import annotations

import random
import re
from typing import Any

import numpy as np

from edgeface.mqtt import payloads
from edgeface.server import audit
from edgeface.server.review import Filters, list_results
from edgeface.server.tables import results
from edgeface.testing.mqttload import sample_result

from .conftest import Browser, add_results


def _queue_order(db: Any) -> list[str]:
    with db.read() as conn:
        rows, _ = list_results(conn, Filters(), limit=1000)
    return [r.id for r in rows]


def _status(db: Any, rid: str) -> str:
    with db.read() as conn:
        return str(conn.execute(results.select().where(results.c.id == rid)).first().review_status)


def test_a_decision_moves_on_to_the_next_pending_match_and_wraps_round(db: Any, as_reviewer: Browser) -> None:
    add_results(db, 4, match_share=1.0, seed=3)
    order = _queue_order(db)
    assert len(order) == 4
    # the second in the queue: next is the third, previous the first
    page = as_reviewer.get(f"/review/{order[1]}").get_data(as_text=True)
    assert f'id="next" href="/review/{order[2]}"' in page and f'id="prev" href="/review/{order[0]}"' in page
    assert re.search(r'id="nav-pending">4<', page)
    r = as_reviewer.post(f"/review/{order[1]}/decide", {"verdict": "reject", "next_pending": "1"})
    assert r.status_code == 302 and r.headers["Location"] == f"/review/{order[2]}?decided={order[1]}"
    assert "Decision recorded on" in as_reviewer.get(r.headers["Location"]).get_data(as_text=True)
    # the oldest: nothing older waits, so the newest pending one comes next
    r = as_reviewer.post(f"/review/{order[3]}/decide", {"verdict": "unknown", "next_pending": "1"})
    assert r.headers["Location"] == f"/review/{order[0]}?decided={order[3]}"
    r = as_reviewer.post(f"/review/{order[0]}/decide", {"verdict": "confirm", "next_pending": "1"})
    assert r.headers["Location"] == f"/review/{order[2]}?decided={order[0]}"
    # the last one: nothing left, the page stays on it
    r = as_reviewer.post(f"/review/{order[2]}/decide", {"verdict": "reject", "next_pending": "1"})
    assert r.headers["Location"] == f"/review/{order[2]}?decided={order[2]}"
    assert [_status(db, i) for i in order] == ["confirmed", "rejected", "rejected", "unknown"]
    # without next_pending (a script, an old page) the decision stays on its item
    add_results(db, 2, match_share=1.0, seed=4)
    rid = _queue_order(db)[0]
    r = as_reviewer.post(f"/review/{rid}/decide", {"verdict": "reject"})
    assert r.headers["Location"] == f"/review/{rid}?decided={rid}"


def test_a_refused_decision_stays_on_its_item_with_the_reason(db: Any, as_reviewer: Browser) -> None:
    add_results(db, 2, match_share=1.0, seed=5)
    rid = _queue_order(db)[0]
    r = as_reviewer.post(f"/review/{rid}/decide", {"verdict": "confirm", "identity": "nobody", "next_pending": "1"})
    assert r.headers["Location"].startswith(f"/review/{rid}?error=")
    assert _status(db, rid) == "pending"


def test_bulk_reject_only_pending_each_audited_never_a_confirmation(
    db: Any, as_reviewer: Browser, as_reviewer2: Browser
) -> None:
    add_results(db, 5, match_share=1.0, seed=6)
    order = _queue_order(db)
    as_reviewer2.post(f"/review/{order[0]}/decide", {"verdict": "confirm"})  # decided meanwhile
    r = as_reviewer.post(
        "/review/bulk-reject",
        {"ids": order[:3], "comment": "clearly another person", "q_device": "unit-a", "q_format": "json"},
    )
    assert r.status_code == 302
    assert r.headers["Location"].startswith("/review?") and "rejected=2" in r.headers["Location"]
    assert "skipped=1" in r.headers["Location"] and "device=unit-a" in r.headers["Location"]
    assert "format" not in r.headers["Location"]  # only the queue's own filters travel back
    assert [_status(db, i) for i in order] == ["confirmed", "rejected", "rejected", "pending", "pending"]
    with db.read() as conn:
        entries = audit.entries(conn, action="review.reject")
    assert sorted(e.subject for e in entries) == sorted(order[1:3])  # one entry per result, as one by one
    assert {e.details["comment"] for e in entries} == {"clearly another person"}
    page = as_reviewer.get(r.headers["Location"]).get_data(as_text=True)
    assert "Rejected 2; 1 skipped" in page
    # no verdict travels: a bulk action can only reject
    r = as_reviewer.post("/review/bulk-reject", {"ids": order[3:], "verdict": "confirm"})
    assert [_status(db, i) for i in order[3:]] == ["rejected", "rejected"]
    assert as_reviewer.post("/review/bulk-reject", {}).status_code == 400
    assert as_reviewer.post("/review/bulk-reject", {"ids": [f"x{i}" for i in range(201)]}).status_code == 400


def test_pending_count_pagination_and_thumbnails(db: Any, as_reviewer: Browser) -> None:
    crop = payloads.crop_payload(np.full((80, 60, 3), 128, np.uint8), max_bytes=16384)
    from edgeface.server.ingest import DbResultStore

    DbResultStore(db).add([sample_result("unit-a", random.Random(8), match_share=1.0, crop=crop)])
    add_results(db, 59, match_share=1.0, seed=9)
    add_results(db, 3, match_share=0.0, seed=10)  # no_match: not waiting for a reviewer
    assert as_reviewer.get("/review/pending.json").get_json() == {"pending": 60, "awaiting_second": 0}
    page = as_reviewer.get("/review").get_data(as_text=True)
    assert (
        "Page 1 of 2 (60 results)" in page
        and 'href="/review?status=pending&amp;decision=match&amp;page=2" id="page-next"' in page
    )
    assert page.count('class="pick"') == 50
    page2 = as_reviewer.get("/review?page=2").get_data(as_text=True)
    assert page2.count('class="pick"') == 10 and 'id="page-prev"' in page2
    assert page.count('class="qthumb"') + page2.count('class="qthumb"') == 1  # only the result sent with a crop


def test_faces_shown_as_aligned_chips_of_one_size_with_the_whole_image_a_click_away(
    db: Any, config: Any, as_reviewer: Browser, lfw_root: Any
) -> None:
    import cv2

    from edgeface.server import auth

    from .test_review import _image

    jane = _image(db, config, "jane", "obama.jpg", "enrolled")
    refused = _image(db, config, "jane", "obama_partial_face.jpg", "refused")
    lfw = next(iter(sorted((lfw_root / "images" / "Aaron_Eckhart").glob("*.jpg"))))
    rgb = cv2.cvtColor(cv2.imread(str(lfw)), cv2.COLOR_BGR2RGB)[60:190, 70:180]
    with_face = sample_result(
        "unit-a", random.Random(31), match_share=1.0, crop=payloads.crop_payload(rgb, max_bytes=16384)
    )
    with_face["candidates"][0]["identity_id"] = "jane"
    blank = sample_result(
        "unit-a",
        random.Random(32),
        match_share=1.0,
        crop=payloads.crop_payload(np.full((80, 60, 3), 128, np.uint8), max_bytes=16384),
    )
    from edgeface.server.ingest import DbResultStore

    DbResultStore(db).add([with_face, blank])
    rid = with_face["id"]
    page = as_reviewer.get(f"/review/{rid}").get_data(as_text=True)
    chip_src = re.findall(r'<img class="enrolled" src="([^"]+)"', page)[0].replace("&amp;", "&")
    assert chip_src.startswith(f"/review/{rid}/images/{jane}/chip.png?t=")
    assert f'src="/review/{rid}/probe-chip.png"' in page and f'<a href="/review/{rid}/crop.jpg" class="full"' in page

    def size(r: Any) -> tuple[int, int]:
        img = cv2.imdecode(np.frombuffer(r.data, np.uint8), cv2.IMREAD_COLOR)
        return int(img.shape[1]), int(img.shape[0])

    enrolled = as_reviewer.get(chip_src)
    probe = as_reviewer.get(f"/review/{rid}/probe-chip.png")
    assert enrolled.status_code == probe.status_code == 200
    assert enrolled.mimetype == probe.mimetype == "image/png"
    assert size(enrolled) == size(probe) and size(probe)[0] <= 160  # the embedder's template, both faces
    assert probe.headers["Cache-Control"] == "private, no-store"
    # no face in the crop: the crop itself, as sent
    r = as_reviewer.get(f"/review/{blank['id']}/probe-chip.png")
    assert r.status_code == 200 and r.mimetype == "image/jpeg"
    # the chip opens exactly what the image opens
    secret = as_reviewer.csrf
    t = auth.view_token(secret, f"review/{rid}", refused)
    assert as_reviewer.get(f"/review/{rid}/images/{refused}/chip.png?t={t}").status_code == 404
    assert as_reviewer.get(f"/review/{rid}/images/{jane}/chip.png").status_code == 403
    assert as_reviewer.get(f"/review/{blank['id']}/images/{jane}/chip.png?t={t}").status_code == 404
