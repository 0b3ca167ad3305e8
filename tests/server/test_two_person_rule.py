"""The two-person rule's count restarts on every verdict that is not a confirmation: a rejection and an
"unknown" alike (server/review.py; tests/server/test_review.py covers the rest of the rule)."""

from __future__ import annotations

from typing import Any

import pytest

from edgeface.server.review import ReviewError, decide

from .conftest import add_results


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
