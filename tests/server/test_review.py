"""The review queue: decisions, the two-person rule, filters, identity search, export, the probe crop."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import random
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import delete, insert, select, text

from edgeface.mqtt import payloads
from edgeface.server import audit, auth, review_chips
from edgeface.server.ingest import DbResultStore
from edgeface.server.review import Filters, ReviewError, decide, list_results
from edgeface.server.tables import identities, images, results
from edgeface.testing.mqttload import sample_result

from .conftest import Browser, add_results, server_config
from .test_migrations import postgres  # noqa: F401  (the module's PostgreSQL cluster fixture)


def _status(db: Any, rid: str) -> str:
    with db.read() as conn:
        return conn.execute(select(results.c.review_status).where(results.c.id == rid)).scalar_one()


def test_confirm_reject_unknown(db: Any, as_reviewer: Browser) -> None:
    docs = add_results(db, 3, match_share=1.0)
    for d, verdict, status in zip(
        docs, ("confirm", "reject", "unknown"), ("confirmed", "rejected", "unknown"), strict=True
    ):
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
            d["id"] for d in docs if d["candidates"][0]["score"] <= 0.3
        }


def test_queue_page_filters_and_export(db: Any, as_reviewer: Browser) -> None:
    docs = add_results(db, 5, match_share=1.0)
    docs[0]["candidates"][0]["identity_id"] = "=HYPERLINK(1)"
    DbResultStore(db).add(
        [
            {
                **sample_result("unit-z", random.Random(9), match_share=1.0),
                "candidates": [{"identity_id": "=cmd()", "score": 0.99}],
            }
        ]
    )
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


@pytest.mark.parametrize(
    "junk",
    [
        "format=json",
        "format=csv&status=all",
        "_external=1",
        "_anchor=x",
        "_method=POST",
        "_scheme=javascript",
        "endpoint=accounts.index",
        "page=2&format=json",
        "rid=1&values=2",
        "status=all&_external=1&identity=x",
    ],
)
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


# -- enrolled images a review shows ------------------------------------------------------------------

IMAGES = Path(__file__).resolve().parents[1] / "images"


def _image(db: Any, config: Any, ident: str, photo: str, status: str) -> int:
    """An image row and its file, as enrollment leaves them (refused uploads are kept for administrators)."""
    data = (IMAGES / photo).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    (config.server.data_dir / "images").mkdir(parents=True, exist_ok=True)
    (config.server.data_dir / "images" / f"{sha}.jpg").write_bytes(data)
    with db.write() as conn:
        if conn.execute(select(identities.c.id).where(identities.c.id == ident)).first() is None:
            conn.execute(insert(identities).values(id=ident, name=ident.title(), created_at=0, created_by="ada"))
        return int(
            conn.execute(
                insert(images)
                .values(
                    identity_id=ident,
                    sha256=sha,
                    filename=f"{sha}.jpg",
                    source="tests/images",
                    consent="public domain",
                    enrolled_by="ada",
                    enrolled_at=0,
                    status=status,
                    reasons="" if status == "enrolled" else "no face",
                )
                .returning(images.c.id)
            ).scalar_one()
        )


@pytest.fixture
def gallery(db: Any, config: Any) -> dict[str, Any]:
    """jane (a candidate of the result): one accepted image and one refused upload; joe: not a candidate."""
    ids = {
        "jane": _image(db, config, "jane", "obama.jpg", "enrolled"),
        "jane_refused": _image(db, config, "jane", "obama_partial_face.jpg", "refused"),
        "joe": _image(db, config, "joe", "biden.jpg", "enrolled"),
    }
    doc = sample_result("unit-a", random.Random(21), match_share=1.0)
    doc["candidates"][0]["identity_id"] = "jane"
    doc["candidates"] = [c for c in doc["candidates"] if c["identity_id"] != "joe"]
    other = sample_result("unit-a", random.Random(22), match_share=1.0)  # jane is not among its candidates
    other["candidates"] = [c for c in other["candidates"] if c["identity_id"] not in ("jane", "joe")]
    DbResultStore(db).add([doc, other])
    return {**ids, "rid": doc["id"], "other": other["id"]}


def _srcs(page: str) -> list[str]:
    """The whole enrolled images the page links (each face shown as its aligned chip, the image a click away)."""
    return [
        u.replace("&amp;", "&") for u in re.findall(r'<a href="([^"]+)" class="full" title="the whole enrolled', page)
    ]


def test_review_page_shows_only_accepted_candidate_images_and_audits_the_view(
    db: Any, gallery: dict[str, Any], as_reviewer: Browser
) -> None:
    rid = gallery["rid"]
    srcs = _srcs(as_reviewer.get(f"/review/{rid}").get_data(as_text=True))
    assert [s.split("?")[0] for s in srcs] == [f"/review/{rid}/images/{gallery['jane']}"]
    r = as_reviewer.get(srcs[0])
    assert r.status_code == 200 and r.data == (IMAGES / "obama.jpg").read_bytes()
    assert r.headers["Cache-Control"] == "private, no-store"
    with db.read() as conn:
        views = audit.entries(conn, action="images.view")
        assert audit.verify(conn).ok
    assert len(views) == 1  # one entry per page view, not one per image fetched
    assert views[0].actor == "rita" and views[0].subject == f"review/{rid}"
    assert views[0].details == {"images": [gallery["jane"]], "identities": ["jane"]}


def test_reviewer_cannot_open_refused_unrelated_or_unshown_images(
    gallery: dict[str, Any], as_reviewer: Browser, as_reviewer2: Browser
) -> None:
    rid, other = gallery["rid"], gallery["other"]
    secret = as_reviewer.csrf  # the session's secret: even correctly signed URLs open nothing else

    def get(result: str, image_id: int, token: str | None = "sign") -> int:
        t = auth.view_token(secret, f"review/{result}", image_id) if token == "sign" else token
        return as_reviewer.get(f"/review/{result}/images/{image_id}" + (f"?t={t}" if t else "")).status_code

    assert get(rid, gallery["jane"]) == 200
    assert get(rid, gallery["jane_refused"]) == 404  # a refused upload of a candidate
    assert get(rid, gallery["joe"]) == 404  # an identity that is not a candidate of this result
    assert get(other, gallery["jane"]) == 404  # jane is not a candidate of that result
    assert get("no-such-result", gallery["jane"]) == 404
    assert get(rid, gallery["jane"], token=None) == 403  # not opened from the (audited) page
    assert get(rid, gallery["jane"], token="0" * 32) == 403
    foreign = auth.view_token(as_reviewer2.csrf, f"review/{rid}", gallery["jane"])  # another session's URL
    assert as_reviewer.get(f"/review/{rid}/images/{gallery['jane']}?t={foreign}").status_code == 403
    for image_id in gallery["jane"], gallery["jane_refused"], gallery["joe"]:  # the gallery's own route: admins
        assert as_reviewer.get(f"/gallery/images/{image_id}").status_code == 403


def test_admin_sees_refused_uploads_from_the_gallery_pages_audited(
    db: Any, gallery: dict[str, Any], as_admin: Browser
) -> None:
    page = as_admin.get("/gallery/identities/jane").get_data(as_text=True)
    srcs = [u.replace("&amp;", "&") for u in re.findall(r'<img class="thumb" src="([^"]+)"', page)]
    assert len(srcs) == 2 and all(as_admin.get(s).status_code == 200 for s in srcs)
    assert as_admin.get(f"/gallery/images/{gallery['jane_refused']}").status_code == 403  # no token
    with db.read() as conn:
        view = audit.entries(conn, action="images.view")[0]
    assert view.subject == "gallery/identities/jane"
    assert view.details == {"images": [gallery["jane"], gallery["jane_refused"]]}


def test_a_review_shows_the_first_three_accepted_images_of_each_candidate(db: Any, config: Any) -> None:
    from edgeface.server.review import SHOWN_PER_CANDIDATE, shown_images

    ids = [_image(db, config, "ann", "obama.jpg", s) for s in ("refused", "enrolled", "unchanged", "enrolled")]
    ids += [_image(db, config, "ann", "biden.jpg", "enrolled"), _image(db, config, "bo", "biden.jpg", "unchanged")]
    _image(db, config, "cy", "biden.jpg", "refused")
    with db.read() as conn:
        assert shown_images(conn, []) == {}
        assert shown_images(conn, ["ann", "bo", "cy", "nobody"]) == {"ann": ids[1:4], "bo": [ids[5]]}
        assert shown_images(conn, ["bo"]) == {"bo": [ids[5]]}
    assert SHOWN_PER_CANDIDATE == 3


def test_a_review_shows_the_first_accepted_images_where_postgresql_stores_later_ones_first(
    postgres: str,  # noqa: F811
) -> None:
    """PostgreSQL puts a new row wherever its free-space map finds room: after another identity's images
    were deleted and (auto)vacuum freed their pages, images enrolled later sit before earlier ones on disk,
    and a query without ORDER BY returns them first. A review still shows the first three by enrollment."""
    from edgeface.server.db import Database
    from edgeface.server.review import shown_images

    db = Database(postgres)

    def add(ident: str, n: int, status: str = "enrolled") -> list[int]:
        row = {
            "identity_id": ident,
            "sha256": "0" * 64,
            "filename": "x.jpg",
            "source": "tests",
            "consent": "public domain",
            "enrolled_by": "ada",
            "enrolled_at": 0.0,
            "status": status,
            "reasons": "",
        }
        with db.write() as conn:
            return [int(conn.execute(insert(images).values(row).returning(images.c.id)).scalar_one()) for _ in range(n)]

    try:
        with db.write() as conn:  # the module's cluster is shared: start from an empty schema
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        db.migrate()
        with db.write() as conn:
            conn.execute(
                insert(identities),
                [{"id": i, "name": i.title(), "created_at": 0.0, "created_by": "ada"} for i in ("ann", "zed")],
            )
        add("zed", 300)  # a few pages of another identity's images
        first = add("ann", 2) + add("ann", 1, "unchanged")
        with db.write() as conn:  # zed's images removed; vacuum then frees their pages
            conn.execute(delete(images).where(images.c.identity_id == "zed"))
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM images"))
        later = add("ann", 2)
        with db.read() as conn:  # the setting this test is about: the later images are stored first
            stored = conn.execute(select(images.c.id).where(images.c.identity_id == "ann")).scalars().all()
            assert stored == later + first, stored
            assert shown_images(conn, ["ann"]) == {"ann": first}
    finally:
        db.dispose()


def test_faces_are_shown_as_aligned_chips_else_the_image_itself(
    db: Any, config: Any, gallery: dict[str, Any], as_reviewer: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    # chips made now by the server's engine, not found in the process-wide cache earlier tests filled
    monkeypatch.setattr(review_chips, "_cache", OrderedDict())
    rid = gallery["rid"]
    as_reviewer.get(f"/review/{rid}")  # the page that shows (and audits) the images
    t = auth.view_token(as_reviewer.csrf, f"review/{rid}", gallery["jane"])
    chip = as_reviewer.get(f"/review/{rid}/images/{gallery['jane']}/chip.png?t={t}")
    assert chip.status_code == 200 and chip.mimetype == "image/png" and chip.data.startswith(b"\x89PNG")
    assert chip.headers["Cache-Control"] == "private, no-store"
    unsigned = as_reviewer.get(f"/review/{rid}/images/{gallery['jane']}/chip.png")
    assert unsigned.status_code == 403
    assert "Open images from the review page that shows them." in unsigned.get_data(as_text=True)
    assert as_reviewer.get(f"/review/{rid}/images/{gallery['joe']}/chip.png?t={t}").status_code == 404
    flat = payloads.crop_payload(np.full((80, 60, 3), 128, np.uint8), max_bytes=16384)  # no face in it
    face = (IMAGES / "obama.jpg").read_bytes()
    docs = []
    junk = {"data": "aGVs!bG8="}  # "hello" to a lenient decoder: a corrupted crop, refused, not served
    for crop in (flat, {"data": base64.b64encode(face).decode()}, junk, {"format": "jpeg"}):
        d = sample_result("unit-a", random.Random(len(docs) + 40), match_share=1.0, crop=crop)
        docs.append(d)
    DbResultStore(db).add(docs)
    r = as_reviewer.get(f"/review/{docs[0]['id']}/probe-chip.png")  # no face: the crop itself
    assert r.status_code == 200 and r.mimetype == "image/jpeg" and r.data == base64.b64decode(flat["data"])
    assert r.headers["Cache-Control"] == "private, no-store"
    r = as_reviewer.get(f"/review/{docs[1]['id']}/probe-chip.png")
    assert r.status_code == 200 and r.mimetype == "image/png" and r.headers["Cache-Control"] == "private, no-store"
    for d in docs[2:]:  # a crop that does not decode, or has no data: none to show
        assert as_reviewer.get(f"/review/{d['id']}/crop.jpg").status_code == 404
        assert as_reviewer.get(f"/review/{d['id']}/probe-chip.png").status_code == 404
    assert as_reviewer.get("/review/no-such-result/probe-chip.png").status_code == 404
    (config.server.data_dir / "images" / f"{hashlib.sha256(face).hexdigest()}.jpg").unlink()  # file gone
    assert as_reviewer.get(f"/review/{rid}/images/{gallery['jane']}?t={t}").status_code == 404
    assert as_reviewer.get(f"/review/{rid}/images/{gallery['jane']}/chip.png?t={t}").status_code == 404
