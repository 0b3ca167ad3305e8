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


def test_each_decision_is_audited_with_what_a_later_reader_needs(db: Any, users: Any) -> None:
    """Who decided (and who made that account), about which result and unit, the identity, the comment,
    the score, the status it led to and whether the two-person rule was on."""
    from edgeface.server import auth

    d = add_results(db, 1, match_share=1.0)[0]
    top, second = d["candidates"][0]["identity_id"], d["candidates"][1]["identity_id"]
    rita, ada = users["reviewer"], users["admin"]
    with db.write() as conn:
        made = auth.create_user(conn, "newbie", "a long password", "reviewer", owner="staff-7", created_by=ada.id)
        score = conn.execute(select(results.c.top_score).where(results.c.id == d["id"])).scalar_one()
    with db.write() as conn:
        assert decide(conn, d["id"], rita, "confirm", second, " second one ", two_person=True) == "awaiting_second"
        first = audit.entries(conn, limit=1)[0]
        assert decide(conn, d["id"], made, "confirm", second, "", two_person=True) == "confirmed"
        agreed = audit.entries(conn, limit=1)[0]
        assert decide(conn, d["id"], made, "unknown", top, "unsure", two_person=False) == "unknown"
        unsure = audit.entries(conn, limit=1)[0]
    common = {"device": d["device_id"], "score": score}
    assert (first.action, first.subject, first.actor) == ("review.confirm", d["id"], "rita")
    cands = [c["identity_id"] for c in d["candidates"]]
    assert first.details == {
        **common,
        "match": "candidate",
        "candidates": cands,
        "identity": second,
        "comment": "second one",
        "status": "awaiting_second",
        "two_person_rule": True,
        "reviewer_owner": "rita",
        "reviewer_created_by": "command line",
    }
    assert (agreed.action, agreed.actor) == ("review.confirm", "newbie")
    assert agreed.details == {
        **common,
        "match": "candidate",
        "candidates": cands,
        "identity": second,
        "comment": "",
        "status": "confirmed",
        "two_person_rule": True,
        "reviewer_owner": "staff-7",
        "reviewer_created_by": "ada",
    }
    assert (unsure.action, unsure.subject) == ("review.unknown", d["id"])
    assert unsure.details == {  # not a confirmation: no identity chosen, no candidates listed
        **common,
        "identity": None,
        "comment": "unsure",
        "status": "unknown",
        "two_person_rule": False,
        "reviewer_owner": "staff-7",
        "reviewer_created_by": "ada",
    }
    stored = _stored(db, d["id"])
    assert [(s.user_id, s.verdict, s.identity_id) for s in stored] == [
        (rita.id, "confirm", second),
        (made.id, "confirm", second),
        (made.id, "unknown", None),
    ]
    with db.read() as conn:
        row = conn.execute(select(results.c.review_status, results.c.reviewed_at).where(results.c.id == d["id"])).one()
    assert row.review_status == "unknown" and row.reviewed_at == stored[-1].created_at


def test_without_the_rule_one_confirmation_is_enough_and_the_same_reviewer_may_repeat_it(db: Any, users: Any) -> None:
    d = add_results(db, 1, match_share=1.0)[0]
    rita = users["reviewer"]
    with db.write() as conn:
        assert decide(conn, d["id"], rita, "confirm", None, "", two_person=False) == "confirmed"
        assert decide(conn, d["id"], rita, "confirm", None, "still him", two_person=False) == "confirmed"
        assert decide(conn, d["id"], rita, "reject", None, "", two_person=False) == "rejected"


def test_under_the_rule_the_first_of_a_new_count_waits_and_a_repeat_is_refused_with_why(db: Any, users: Any) -> None:
    d = add_results(db, 1, match_share=1.0)[0]
    top, second = d["candidates"][0]["identity_id"], d["candidates"][1]["identity_id"]
    rita, rob = users["reviewer"], users["reviewer2"]
    with db.write() as conn:
        assert decide(conn, d["id"], rita, "confirm", top, "", two_person=True) == "awaiting_second"
        assert decide(conn, d["id"], rita, "confirm", second, "", two_person=True) == "awaiting_second"
    msg = (
        "^you already confirmed this candidate; under the two-person rule a second, different reviewer must confirm it$"
    )
    for ident in (top, second):
        with pytest.raises(ReviewError, match=msg), db.write() as conn:
            decide(conn, d["id"], rita, "confirm", ident, "", two_person=True)
    with db.write() as conn:
        assert decide(conn, d["id"], rob, "confirm", top, "", two_person=True) == "confirmed"
        assert decide(conn, d["id"], rob, "reject", None, "", two_person=True) == "rejected"
        assert decide(conn, d["id"], rob, "confirm", top, "", two_person=True) == "awaiting_second"
    assert [s.verdict for s in _stored(db, d["id"])] == ["confirm", "confirm", "confirm", "reject", "confirm"]


def test_confirming_as_a_new_person_creates_it_pending_for_this_result_and_this_reviewer(db: Any, users: Any) -> None:
    from edgeface.server.tables import identities

    d = add_results(db, 1, match_share=1.0)[0]
    rita = users["reviewer"]
    with db.write() as conn:
        assert (
            decide(conn, d["id"], rita, "confirm", None, "", two_person=False, new_person=" Jane  Roe ") == "confirmed"
        )
        pending, decision = audit.entries(conn, limit=2)[::-1]
        ident = conn.execute(select(identities).where(identities.c.name == "Jane Roe")).one()
    assert (ident.status, ident.created_by) == ("pending", "rita")
    assert (pending.action, pending.actor, pending.subject) == ("identity.pending", "rita", ident.id)
    assert pending.details == {"name": "Jane Roe", "result_id": d["id"]}
    assert (decision.action, decision.details["identity"], decision.details["match"]) == (
        "review.confirm",
        ident.id,
        "new_person",
    )
    assert _stored(db, d["id"])[0].identity_id == ident.id
