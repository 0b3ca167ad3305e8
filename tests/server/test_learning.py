"""Correct and learn (issue 16 item 2): a confirmation names any identity on the server or a new person,
with the two-person rule and the audit as for a candidate; an administrator adds a confirmed probe to the
person's gallery images through the enrollment quality gate, with provenance, and the next published
gallery carries it. Real engine, real crops (tests/images), a real signed bundle."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import insert, select

from edgeface.gallery.signing import generate_keypair
from edgeface.mqtt import payloads
from edgeface.server import audit
from edgeface.server.db import Database
from edgeface.server.ingest import DbResultStore
from edgeface.server.learning import LearnRefused, add_probe_to_gallery
from edgeface.server.review import ReviewError, decide
from edgeface.server.review_identity import NEW_PERSON, search_identities
from edgeface.server.tables import identities, images, results, reviews
from edgeface.testing.mqttload import sample_result

from .conftest import Browser, make_user
from .test_gallery_admin import IMAGES, _enroll
from .test_migrations import postgres  # noqa: F401  (the module's PostgreSQL cluster fixture)


def _result(db: Any, photo: str | Path | None = "obama2.jpg", seed: int = 7) -> dict[str, Any]:
    """A match whose probe crop is ``photo`` (tests/images, or a path) as a unit sends it (at most 160 px);
    an LFW photo is cut to its middle, where the face is, as review_browser.py does."""
    crop = None
    if photo:
        rgb = np.asarray(Image.open(IMAGES / photo).convert("RGB"))
        if isinstance(photo, Path) and "lfw" in photo.parts:
            rgb = rgb[60:190, 70:180]
        crop = payloads.crop_payload(np.ascontiguousarray(rgb), max_bytes=16384)
    doc = sample_result("unit-a", random.Random(seed), match_share=1.0, crop=crop)
    DbResultStore(db).add([doc])
    return doc


def _identity(db: Any, ident: str, name: str, status: str = "enrolled") -> None:
    with db.write() as conn:
        conn.execute(insert(identities).values(id=ident, name=name, created_at=0.0, created_by="ada", status=status))


def _actions(db: Any, subject: str) -> dict[str, Any]:
    """Each action's newest audit entry about ``subject``."""
    with db.read() as conn:
        return {e.action: e.details for e in reversed(audit.entries(conn, limit=1000)) if e.subject == subject}


def test_new_person_is_a_pending_identity_and_audited(db: Any, users: Any) -> None:
    d = _result(db, None)
    with db.write() as conn:
        status = decide(conn, d["id"], users["reviewer"], "confirm", None, "", two_person=False, new_person=" Ada  L. ")
    assert status == "confirmed"
    with db.read() as conn:
        ident = conn.execute(select(reviews.c.identity_id).where(reviews.c.result_id == d["id"])).scalar_one()
        row = conn.execute(select(identities).where(identities.c.id == ident)).one()
        assert audit.verify(conn).ok
    assert re.fullmatch(r"ada-l-[0-9a-f]{6}", ident), ident
    assert (row.name, row.status, row.created_by) == ("Ada L.", "pending", "rita")
    assert _actions(db, ident)["identity.pending"] == {"name": "Ada L.", "result_id": d["id"]}
    confirm = _actions(db, d["id"])["review.confirm"]
    assert confirm["match"] == "new_person" and confirm["identity"] == ident
    assert confirm["candidates"] == [c["identity_id"] for c in d["candidates"]]
    # an empty name is refused, and nothing is created
    with pytest.raises(ReviewError, match="type the new person's name"), db.write() as conn:
        decide(conn, d["id"], users["reviewer"], "confirm", None, "", two_person=False, new_person="  ")
    with pytest.raises(ReviewError, match="either an identity or a new person"), db.write() as conn:
        decide(conn, d["id"], users["reviewer"], "confirm", ident, "", two_person=False, new_person="Bo")
    with db.read() as conn:
        assert conn.execute(select(identities.c.id)).scalars().all() == [ident]


def test_two_person_rule_holds_for_a_non_candidate(db: Any, users: Any) -> None:
    d = _result(db, None)
    _identity(db, "zed", "Zed Zedson")
    rita, rob = users["reviewer"], users["reviewer2"]
    with db.write() as conn:
        assert decide(conn, d["id"], rita, "confirm", "zed", "I know him", two_person=True) == "awaiting_second"
    with pytest.raises(ReviewError, match="second, different reviewer"), db.write() as conn:
        decide(conn, d["id"], rita, "confirm", "zed", "again", two_person=True)
    with db.write() as conn:  # the second reviewer confirming a candidate instead does not count
        top = d["candidates"][0]["identity_id"]
        assert decide(conn, d["id"], rob, "confirm", top, "", two_person=True) == "awaiting_second"
        assert decide(conn, d["id"], rob, "confirm", "zed", "yes, Zed", two_person=True) == "confirmed"
    with pytest.raises(ReviewError, match="no identity 'nobody' on this server"), db.write() as conn:
        decide(conn, d["id"], rob, "confirm", "nobody", "", two_person=True)
    with db.read() as conn:
        confirms = [
            e.details for e in audit.entries(conn, action="review.confirm") if e.subject == d["id"]
        ]  # newest first
    assert [(c["identity"], c["match"], c["status"]) for c in confirms] == [
        ("zed", "non_candidate", "confirmed"),
        (top, "candidate", "awaiting_second"),
        ("zed", "non_candidate", "awaiting_second"),
    ]


def test_a_new_person_needs_the_second_reviewer_to_name_the_same_identity(db: Any, users: Any) -> None:
    d = _result(db, None)
    rita, rob = users["reviewer"], users["reviewer2"]
    with db.write() as conn:
        assert decide(conn, d["id"], rita, "confirm", None, "", two_person=True, new_person="Kim") == "awaiting_second"
        kim = conn.execute(select(reviews.c.identity_id).where(reviews.c.result_id == d["id"])).scalar_one()
        # another "new person" of the same name is another identity: still one confirmation each
        assert decide(conn, d["id"], rob, "confirm", None, "", two_person=True, new_person="Kim") == "awaiting_second"
        assert decide(conn, d["id"], rob, "confirm", kim, "same Kim", two_person=True) == "confirmed"


def test_identity_search_by_name_or_id_any_case(db: Any) -> None:
    _identity(db, "obama", "Barack Obama")
    _identity(db, "kim-1a2b3c", "Kim 100%", status="pending")
    with db.read() as conn:
        assert [h.id for h in search_identities(conn, "OBAM")] == ["obama"]
        assert [h.id for h in search_identities(conn, "barack")] == ["obama"]
        hit = search_identities(conn, "100%")[0]
        assert (hit.id, hit.status, hit.images) == ("kim-1a2b3c", "pending", 0)
        assert search_identities(conn, "%") == [hit]  # '%' is a character here, not a wildcard
        assert search_identities(conn, "nobody") == []


def test_review_page_searches_and_confirms_a_new_person(app: Any, db: Any, as_reviewer: Browser) -> None:
    d = _result(db, None)
    _identity(db, "obama", "Barack Obama")
    page = as_reviewer.get(f"/review/{d['id']}?who=obama").get_data(as_text=True)
    assert 'value="obama" checked' in page and "1 found for" in page  # the found identity is the choice
    r = as_reviewer.post(
        f"/review/{d['id']}/decide", {"verdict": "confirm", "identity": NEW_PERSON, "new_person": "Jo Doe"}
    )
    assert r.status_code == 302 and "error" not in r.headers["Location"]
    with db.read() as conn:
        ident = conn.execute(select(reviews.c.identity_id).where(reviews.c.result_id == d["id"])).scalar_one()
    assert ident.startswith("jo-doe-")
    r = as_reviewer.post(f"/review/{d['id']}/decide", {"verdict": "confirm", "identity": NEW_PERSON})
    assert "type+the+new+person" in r.headers["Location"].replace("%27", "'").replace("%20", "+")


@pytest.fixture
def obama(config: Any, as_admin: Browser) -> None:
    generate_keypair(config.server.signing_key, config.server.signing_key.with_suffix(".pub"))
    assert _enroll(as_admin, "obama", IMAGES / "obama.jpg").status_code == 200


def _confirm(db: Any, users: Any, rid: str, ident: str) -> None:
    with db.write() as conn:
        assert decide(conn, rid, users["reviewer"], "confirm", ident, "", two_person=True) == "awaiting_second"
        assert decide(conn, rid, users["reviewer2"], "confirm", ident, "", two_person=True) == "confirmed"


def test_a_confirmed_probe_joins_the_gallery_with_provenance_and_is_published(
    app: Any, config: Any, db: Any, users: Any, obama: None, as_admin: Browser
) -> None:
    svc = app.extensions["edgeface"]
    d = _result(db, "obama2.jpg")
    with db.write() as conn:
        decide(conn, d["id"], users["reviewer"], "confirm", "obama", "", two_person=True)
    with pytest.raises(LearnRefused, match="is awaiting_second, not confirmed") as e:  # one of two reviewers
        add_probe_to_gallery(svc, d["id"], "ada", "public domain portrait")
    assert e.value.status == 409
    with db.write() as conn:
        assert decide(conn, d["id"], users["reviewer2"], "confirm", "obama", "", two_person=True) == "confirmed"
    with pytest.raises(LearnRefused, match="consent or legal basis") as e:
        add_probe_to_gallery(svc, d["id"], "ada", "  ")
    assert e.value.status == 400
    learnt = add_probe_to_gallery(svc, d["id"], "ada", "public domain portrait")
    assert (learnt.identity_id, learnt.status) == ("obama", "enrolled")
    assert f"probe of result {d['id']}" in learnt.source and "by rita, rob at " in learnt.source
    assert "added by ada" in learnt.source
    with db.read() as conn:
        row = conn.execute(select(images).where(images.c.id == learnt.image_id)).one()
        assert audit.verify(conn).ok
    assert (row.identity_id, row.result_id, row.status, row.enrolled_by) == ("obama", d["id"], "enrolled", "ada")
    assert row.source == learnt.source and row.consent == "public domain portrait"
    assert (config.server.data_dir / "images" / row.filename).is_file()
    acts = _actions(db, d["id"])
    assert acts["review.learn"]["image_id"] == learnt.image_id and acts["review.learn"]["reviewers"] == ["rita", "rob"]
    assert _actions(db, "obama")["enroll.image"]["result_id"] == d["id"]
    with pytest.raises(LearnRefused, match="already gallery image") as e:
        add_probe_to_gallery(svc, d["id"], "ada", "public domain portrait")
    assert e.value.status == 409
    # the next published gallery carries it, with its provenance
    assert as_admin.post("/gallery/publish").status_code == 200
    bundle = config.server.data_dir / "publish" / config.models.embedder / "v0000000001"
    entries = [json.loads(x) for x in (bundle / "entries.ndjson").read_text().splitlines()]
    mine = [e for e in entries if e["image"] == learnt.sha256]
    assert len(mine) == 1 and mine[0]["identity"] == "obama" and d["id"] in mine[0]["source"]
    assert len(entries) == 2


def test_a_pending_new_person_becomes_enrolled_with_its_probe(
    app: Any, db: Any, users: Any, obama: None, lfw_root: Path
) -> None:
    d = _result(db, sorted((lfw_root / "images" / "Aaron_Eckhart").glob("*.jpg"))[0])  # someone not enrolled
    with db.write() as conn:
        decide(conn, d["id"], users["reviewer"], "confirm", None, "", two_person=False, new_person="Barry")
        ident = conn.execute(select(reviews.c.identity_id).where(reviews.c.result_id == d["id"])).scalar_one()
    learnt = add_probe_to_gallery(app.extensions["edgeface"], d["id"], "ada", "court order 1/26")
    with db.read() as conn:
        row = conn.execute(select(identities.c.status, identities.c.name).where(identities.c.id == ident)).one()
    assert learnt.identity_id == ident and tuple(row) == ("enrolled", "Barry")


def test_the_quality_gate_refuses_a_bad_crop_and_keeps_nothing_but_the_audit(
    app: Any, config: Any, db: Any, users: Any, obama: None, as_admin: Browser
) -> None:
    d = _result(db, "biden.jpg")  # the whole portrait shrunk to 160 px: a face of ~23 px, blurred
    _confirm(db, users, d["id"], "obama")
    files = sorted(p.name for p in (config.server.data_dir / "images").iterdir())
    with pytest.raises(LearnRefused, match=r"quality gate refused this probe \(size [\d.]+ < limit") as e:
        add_probe_to_gallery(app.extensions["edgeface"], d["id"], "ada", "public domain portrait")
    assert e.value.status == 422
    with db.read() as conn:
        assert conn.execute(select(images.c.id).where(images.c.result_id == d["id"])).first() is None
    assert sorted(p.name for p in (config.server.data_dir / "images").iterdir()) == files
    tried = _actions(db, "obama")["enroll.image"]
    assert tried["status"] == "refused" and tried["result_id"] == d["id"]
    assert "review.learn" not in _actions(db, d["id"])
    r = as_admin.post(f"/gallery/learn/{d['id']}", {"consent": "public domain portrait"})  # the page says why
    page = r.get_data(as_text=True)
    assert r.status_code == 422 and "Not added" in page and "quality gate refused this probe (size" in page


def test_no_crop_purged_crop_and_unknown_identity_are_refused(app: Any, db: Any, users: Any, obama: None) -> None:
    svc = app.extensions["edgeface"]
    none_sent = _result(db, None, seed=1)
    _confirm(db, users, none_sent["id"], "obama")
    with pytest.raises(LearnRefused, match="sent no face crop"):
        add_probe_to_gallery(svc, none_sent["id"], "ada", "x")
    purged = _result(db, None, seed=2)
    _confirm(db, users, purged["id"], "obama")
    with db.write() as conn:
        conn.execute(results.update().where(results.c.id == purged["id"]).values(crop_purged_at=1.0e9))
    with pytest.raises(LearnRefused, match="removed by retention on 2001-09-09") as e:
        add_probe_to_gallery(svc, purged["id"], "ada", "x")
    assert e.value.status == 409
    elsewhere = _result(db, "obama2.jpg", seed=3)  # a candidate of the unit's gallery unknown to this server
    _confirm(db, users, elsewhere["id"], elsewhere["candidates"][0]["identity_id"])
    with pytest.raises(LearnRefused, match="is not an identity on this server"):
        add_probe_to_gallery(svc, elsewhere["id"], "ada", "x")
    with pytest.raises(LearnRefused, match="no result nope") as e:
        add_probe_to_gallery(svc, "nope", "ada", "x")
    assert e.value.status == 404


def test_only_an_administrator_adds_a_probe(
    app: Any, db: Any, users: Any, obama: None, as_reviewer: Browser, as_admin: Browser
) -> None:
    d = _result(db, "obama2.jpg")
    _confirm(db, users, d["id"], "obama")
    assert as_reviewer.post(f"/gallery/learn/{d['id']}", {"consent": "x"}).status_code == 403
    assert as_reviewer.get("/gallery/learn").status_code == 403
    assert as_reviewer.get(f"/gallery/learn/{d['id']}/probe.jpg").status_code == 403
    page = as_reviewer.get(f"/review/{d['id']}").get_data(as_text=True)
    assert 'id="learn-admin"' in page and 'id="learn-form"' not in page  # says who can, offers no button
    with db.read() as conn:
        assert conn.execute(select(images.c.id).where(images.c.result_id == d["id"])).first() is None
    listing = as_admin.get("/gallery/learn").get_data(as_text=True)
    assert f'id="learn-{d["id"]}"' in listing and "rita, rob" in listing
    assert as_admin.get(f"/gallery/learn/{d['id']}/probe.jpg").data[:2] == b"\xff\xd8"
    r = as_admin.post(f"/gallery/learn/{d['id']}", {"consent": "public domain portrait"})
    assert r.status_code == 200 and "Added to obama" in r.get_data(as_text=True)
    r = as_admin.post(f"/gallery/learn/{d['id']}", {"consent": "public domain portrait"})
    assert r.status_code == 409 and "already gallery image" in r.get_data(as_text=True)


def test_reviewer_page_offers_earlier_non_candidate_confirmations(db: Any, users: Any, as_reviewer2: Browser) -> None:
    d = _result(db, None)
    with db.write() as conn:
        decide(conn, d["id"], users["reviewer"], "confirm", None, "", two_person=True, new_person="Lee Smith")
    page = as_reviewer2.get(f"/review/{d['id']}").get_data(as_text=True)
    m = re.search(
        r'<label class="other proposed"><input type="radio" name="identity" value="(lee-smith-[0-9a-f]{6})"', page
    )
    assert m and "a new person, pending enrollment" in page


def test_a_user_with_both_roles_adds_from_the_review_page(app: Any, db: Any, users: Any, obama: None) -> None:
    make_user(db, "max", "reviewer", "admin")
    b = Browser(app)
    assert b.login("max").status_code == 302
    d = _result(db, "obama2.jpg")
    _confirm(db, users, d["id"], "obama")
    page = b.get(f"/review/{d['id']}").get_data(as_text=True)
    assert 'id="learn-form"' in page and "Add this probe to obama's gallery images" in page
    assert b.post(f"/gallery/learn/{d['id']}", {"consent": "public domain portrait"}).status_code == 200
    page = b.get(f"/review/{d['id']}").get_data(as_text=True)
    assert 'id="learnt"' in page and 'id="learn-form"' not in page


def test_search_and_non_candidate_confirmations_on_postgresql(postgres: str) -> None:  # noqa: F811
    """The case-folded LIKE with its escape, the group by, the two-person rule for a non-candidate and a new
    person's identity behave on PostgreSQL as on SQLite."""
    pg = Database(postgres)
    pg.migrate()
    try:
        rita, rob = make_user(pg, "rita-pg", "reviewer"), make_user(pg, "rob-pg", "reviewer")
        _identity(pg, "obama", "Barack Obama")
        _identity(pg, "under_score", "Kim 100%", status="pending")
        d = _result(pg, None, seed=11)
        with pg.read() as conn:
            assert [h.id for h in search_identities(conn, "OBAM")] == ["obama"]
            assert [h.id for h in search_identities(conn, "100%")] == ["under_score"]
            assert [h.id for h in search_identities(conn, "o_a")] == []  # "_" is a character here: obama does not match
        with pg.write() as conn:
            assert decide(conn, d["id"], rita, "confirm", "obama", "", two_person=True) == "awaiting_second"
            assert decide(conn, d["id"], rob, "confirm", "obama", "", two_person=True) == "confirmed"
        with pg.write() as conn:  # another identity: the count starts again
            assert (
                decide(conn, d["id"], rob, "confirm", None, "", two_person=True, new_person="Pat") == "awaiting_second"
            )
        with pg.read() as conn:
            pat = conn.execute(select(identities.c.status).where(identities.c.name == "Pat")).scalar_one()
        assert pat == "pending"
    finally:
        pg.dispose()
