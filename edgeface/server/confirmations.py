"""What a confirmed result's review established: whom it was confirmed as, by whom, when; and which
gallery image its probe became (learning.py adds it). Read by the review page and the learning pages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from .tables import images, results, reviews, users

ACCEPTED = ("enrolled", "unchanged")  # an image row that is part of the gallery


@dataclass(frozen=True)
class Confirmation:
    """Who confirmed a result as whom, and when (the confirmations that made its status 'confirmed')."""

    identity_id: str
    reviewers: list[str]
    confirmed_at: float


def confirmation_of(conn: Connection, result_id: str) -> Confirmation | None:
    """The confirmation behind a 'confirmed' result (None unless it is confirmed)."""
    status = conn.execute(select(results.c.review_status).where(results.c.id == result_id)).scalar()
    if status != "confirmed":
        return None
    since: list[Any] = []  # confirmations since the last rejection/unknown, as review.decide counts them
    for h in conn.execute(
        select(reviews.c.verdict, reviews.c.identity_id, reviews.c.created_at, users.c.username)
        .join(users, users.c.id == reviews.c.user_id)
        .where(reviews.c.result_id == result_id)
        .order_by(reviews.c.id)
    ):
        since = since + [h] if h.verdict == "confirm" else []
    if not since:
        return None
    last = since[-1]
    names = list(dict.fromkeys(h.username for h in since if h.identity_id == last.identity_id))
    return Confirmation(str(last.identity_id), names, float(last.created_at))


def learnt_images(conn: Connection, result_ids: list[str]) -> dict[str, int]:
    """The gallery image each of these results' probes became (accepted images only)."""
    if not result_ids:
        return {}
    rows = conn.execute(
        select(images.c.result_id, images.c.id).where(images.c.result_id.in_(result_ids), images.c.status.in_(ACCEPTED))
    )
    return {r.result_id: int(r.id) for r in rows}
