"""What one review decision stores (server/review.decide): the identity a confirmation names, none for a
rejection, the comment trimmed and bounded, and the refusals with what to do instead."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from sqlalchemy import select, update

from edgeface.server import audit
from edgeface.server.review import ReviewError, decide
from edgeface.server.tables import results, reviews

from .conftest import add_results


def _stored(db: Any, rid: str) -> list[Any]:
    with db.read() as conn:
        return list(conn.execute(select(reviews).where(reviews.c.result_id == rid).order_by(reviews.c.id)).all())


def test_a_confirmation_names_the_top_candidate_unless_told_and_a_rejection_none(db: Any, users: Any) -> None:
    d = add_results(db, 1, match_share=1.0)[0]
    top = d["candidates"][0]["identity_id"]
    with db.write() as conn:
        decide(conn, d["id"], users["reviewer"], "confirm", None, "  looks like him  ", two_person=False)
        decide(conn, d["id"], users["reviewer"], "reject", top, "", two_person=False)
        decide(conn, d["id"], users["reviewer"], "unknown", None, None, two_person=False)  # type: ignore[arg-type]
    confirm, reject, unknown = _stored(db, d["id"])
    assert (confirm.identity_id, confirm.comment) == (top, "looks like him")
    assert (reject.identity_id, reject.comment) == (None, "")  # a rejection names nobody, whatever was passed
    assert (unknown.identity_id, unknown.comment) == (None, "")


def test_a_comment_is_kept_to_2000_characters(db: Any, users: Any) -> None:
    d = add_results(db, 1, match_share=1.0)[0]
    with db.write() as conn:
        decide(conn, d["id"], users["reviewer"], "unknown", None, "x" * 2000 + "y" * 1000, two_person=False)
    assert _stored(db, d["id"])[0].comment == "x" * 2000


def test_refusals_say_what_was_wrong(db: Any, users: Any) -> None:
    with pytest.raises(ReviewError, match="^no result nope$"), db.write() as conn:
        decide(conn, "nope", users["reviewer"], "reject", None, "", two_person=False)
    d = add_results(db, 1, match_share=1.0)[0]
    with db.write() as conn:  # a result whose candidates list is empty: nothing to confirm
        payload = json.loads(conn.execute(select(results.c.payload).where(results.c.id == d["id"])).scalar_one())
        payload["candidates"] = []
        conn.execute(update(results).where(results.c.id == d["id"]).values(payload=json.dumps(payload)))
    with (
        pytest.raises(
            ReviewError,
            match="^this result has no candidates: search for the identity to confirm, or confirm as a new person$",
        ),
        db.write() as conn,
    ):
        decide(conn, d["id"], users["reviewer"], "confirm", None, "", two_person=False)
    assert _stored(db, d["id"]) == []


def test_the_result_records_when_and_the_audit_entry_who(db: Any, users: Any) -> None:
    d = add_results(db, 1, match_share=1.0)[0]
    rita = users["reviewer"]
    before = time.time()
    with db.write() as conn:
        decide(conn, d["id"], rita, "reject", None, "no", two_person=False)
    with db.read() as conn:
        row = conn.execute(select(results.c.review_status, results.c.reviewed_at).where(results.c.id == d["id"])).one()
        entry = audit.entries(conn, limit=1)[0]
    assert row.review_status == "rejected" and before <= row.reviewed_at <= time.time()
    details = entry.details
    assert (entry.action, entry.subject, entry.actor) == ("review.reject", d["id"], rita.username)
    assert details["reviewer_owner"] == rita.username and details["status"] == "rejected"
