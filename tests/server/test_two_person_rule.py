"""The two-person rule's count restarts on every verdict that is not a confirmation: a rejection and an
"unknown" alike, taken in the order they were given, also where PostgreSQL stores them in another order
(server/review.py; tests/server/test_review.py covers the rest of the rule)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import delete, insert, select, text

from edgeface.server.db import Database
from edgeface.server.review import ReviewError, decide
from edgeface.server.tables import reviews

from .conftest import add_results, make_user
from .test_migrations import postgres  # noqa: F401  (the module's PostgreSQL cluster fixture)


@pytest.mark.parametrize("verdict, status", [("unknown", "unknown"), ("reject", "rejected")])
def test_an_intervening_verdict_restarts_the_count(db: Any, users: Any, verdict: str, status: str) -> None:
    d = add_results(db, 1, match_share=1.0)[0]
    top = d["candidates"][0]["identity_id"]
    rita, rob = users["reviewer"], users["reviewer2"]
    with db.write() as conn:
        assert decide(conn, d["id"], rita, "confirm", top, "it is him", two_person=True) == "awaiting_second"
        assert decide(conn, d["id"], rob, verdict, None, "not sure", two_person=True) == status
        # rita's confirmation came before the intervening verdict: rob's is the first of a new count
        assert decide(conn, d["id"], rob, "confirm", top, "on second look", two_person=True) == "awaiting_second"
        assert decide(conn, d["id"], rita, "confirm", top, "agreed", two_person=True) == "confirmed"


def test_an_unknown_verdict_is_refused_naming_the_allowed_ones(db: Any, users: Any) -> None:
    d = add_results(db, 1, match_share=1.0)[0]
    with pytest.raises(ReviewError, match="verdict must be one of confirm, reject, unknown"), db.write() as conn:
        decide(conn, d["id"], users["reviewer"], "approve", None, "", two_person=True)


def test_the_count_follows_the_order_of_the_verdicts_where_postgresql_stores_them_out_of_order(
    postgres: str,  # noqa: F811
) -> None:
    """PostgreSQL puts a new row wherever its free-space map finds room: after the purge deleted old
    reviews and (auto)vacuum freed their pages, a later verdict can sit before an earlier one on disk, and a
    query without ORDER BY returns it first. The rule must read the verdicts in the order they were given."""
    db = Database(postgres)
    try:
        with db.write() as conn:  # the module's cluster is shared: start from an empty schema
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        db.migrate()
        rita, rob = make_user(db, "rita", "reviewer"), make_user(db, "rob", "reviewer")
        d, purged, kept = add_results(db, 3, match_share=1.0)
        top = d["candidates"][0]["identity_id"]

        def filler(rid: str) -> None:  # a few pages of other results' reviews
            with db.write() as conn:
                conn.execute(
                    insert(reviews),
                    [{"result_id": rid, "user_id": rob.id, "verdict": "reject", "comment": "", "created_at": 0.0}]
                    * 400,
                )

        filler(purged["id"])
        with db.write() as conn:
            assert decide(conn, d["id"], rita, "confirm", top, "it is him", two_person=True) == "awaiting_second"
        filler(kept["id"])
        with db.write() as conn:  # the purge removes a result's reviews; vacuum then frees their pages
            conn.execute(delete(reviews).where(reviews.c.result_id == purged["id"]))
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM reviews"))
        with db.write() as conn:
            assert decide(conn, d["id"], rob, "reject", None, "not him", two_person=True) == "rejected"
        with db.read() as conn:  # the setting this test is about: the rejection is stored first
            stored = conn.execute(select(reviews.c.verdict).where(reviews.c.result_id == d["id"])).scalars().all()
        assert stored == ["reject", "confirm"], stored
        with db.write() as conn:  # rita's confirmation came before the rejection: hers starts a new count
            assert decide(conn, d["id"], rita, "confirm", top, "on second look", two_person=True) == "awaiting_second"
            assert decide(conn, d["id"], rob, "confirm", top, "agreed", two_person=True) == "confirmed"
    finally:
        db.dispose()
