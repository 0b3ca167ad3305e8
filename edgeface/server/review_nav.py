"""Where a reviewer goes next: the pending matches in the queue's order (newest received first).

A decision moves the reviewer on to the next pending match after the one decided, so a backlog is
worked through without going back to the queue; "next" and "previous" walk the same order without
deciding. Only pending matches are walked (what the queue shows by default): a result awaiting its
second confirmation is left to the reviewers who open it on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, Connection, and_, func, or_, select

from .tables import results


@dataclass(frozen=True)
class Neighbours:
    """The pending matches either side of a result in the queue's order (None at either end)."""

    previous: str | None
    next: str | None
    pending: int


def _pending() -> ColumnElement[bool]:
    return and_(results.c.review_status == "pending", results.c.decision == "match")


def neighbours(conn: Connection, rid: str) -> Neighbours:
    """The pending match just newer (previous) and just older (next) than ``rid``, and how many wait."""
    pending = int(conn.execute(select(func.count()).select_from(results).where(_pending())).scalar_one())
    row = conn.execute(select(results.c.received_at).where(results.c.id == rid)).first()
    if row is None:
        return Neighbours(None, None, pending)
    at = row.received_at
    older = or_(results.c.received_at < at, and_(results.c.received_at == at, results.c.id < rid))
    newer = or_(results.c.received_at > at, and_(results.c.received_at == at, results.c.id > rid))
    nxt = conn.execute(
        select(results.c.id)
        .where(_pending(), older)
        .order_by(results.c.received_at.desc(), results.c.id.desc())
        .limit(1)
    ).scalar()
    prev = conn.execute(
        select(results.c.id).where(_pending(), newer).order_by(results.c.received_at, results.c.id).limit(1)
    ).scalar()
    return Neighbours(prev, nxt, pending)


def after_decision(conn: Connection, rid: str) -> str | None:
    """The pending match to show once ``rid`` is decided: the next older one, else the newest left
    (the queue wraps round), never ``rid`` itself; None when nothing else waits."""
    nxt = neighbours(conn, rid).next
    if nxt is not None:
        return nxt
    newest = conn.execute(
        select(results.c.id)
        .where(_pending(), results.c.id != rid)
        .order_by(results.c.received_at.desc(), results.c.id.desc())
        .limit(1)
    ).scalar()
    return str(newest) if newest is not None else None


def pending_count(conn: Connection) -> dict[str, int]:
    """Pending matches and results awaiting a second confirmation: the count the pages refresh."""
    rows = conn.execute(
        select(results.c.review_status, func.count())
        .where(
            or_(
                _pending(),
                results.c.review_status == "awaiting_second",
            )
        )
        .group_by(results.c.review_status)
    ).all()
    counts = {str(s): int(n) for s, n in rows}
    return {"pending": counts.get("pending", 0), "awaiting_second": counts.get("awaiting_second", 0)}
