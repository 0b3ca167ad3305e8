"""The review queue's filters and listing: which results a queue page, an export or a reviewer's
"next" shows, in one order (newest received first)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from flask import abort
from sqlalchemy import Connection, Select, func, or_, select

from .tables import identities, results, reviews

STATUSES = ("pending", "awaiting_second", "confirmed", "rejected", "unknown")
PAGE = 50


@dataclass(frozen=True)
class Filters:
    status: str = "pending"
    decision: str = "match"
    device: str = ""
    date_from: str = ""
    date_to: str = ""
    min_score: float | None = None
    max_score: float | None = None
    identity: str = ""

    @classmethod
    def from_args(cls, args: Any) -> Filters:
        def num(k: str) -> float | None:
            try:
                return float(args[k]) if args.get(k) else None
            except ValueError:
                abort(400, f"{k} must be a number")

        f = cls(
            status=args.get("status", "pending"),
            decision=args.get("decision", "match"),
            device=args.get("device", "").strip(),
            date_from=args.get("date_from", "").strip(),
            date_to=args.get("date_to", "").strip(),
            min_score=num("min_score"),
            max_score=num("max_score"),
            identity=args.get("identity", "").strip(),
        )
        if f.status not in ("", "all", *STATUSES) or f.decision not in ("", "all", "match", "no_match", "refused"):
            abort(400, "unknown status or decision filter")
        return f

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in ("", None)}

    def as_query(self) -> dict[str, str]:
        """The filters as query parameters for links (only these keys: never the request's own arguments,
        whose names could collide with ``url_for``'s, e.g. ``format``, ``_external``, ``_anchor``)."""
        return {k: str(v) for k, v in self.as_dict().items()}


def _day(text: str, end: bool) -> float:
    try:
        d = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    except ValueError:
        abort(400, f"dates are YYYY-MM-DD, got {text[:20]!r}")
    return d.timestamp() + (86400 if end else 0)


def apply_filters(q: Select[Any], f: Filters) -> Select[Any]:
    if f.status not in ("", "all"):
        q = q.where(results.c.review_status == f.status)
    if f.decision not in ("", "all"):
        q = q.where(results.c.decision == f.decision)
    if f.device:
        q = q.where(results.c.device_id == f.device)
    if f.date_from:
        q = q.where(results.c.captured_ts >= _day(f.date_from, False))
    if f.date_to:
        q = q.where(results.c.captured_ts < _day(f.date_to, True))
    if f.min_score is not None:
        q = q.where(results.c.top_score >= f.min_score)
    if f.max_score is not None:
        q = q.where(results.c.top_score <= f.max_score)
    if f.identity:
        like = f"%{f.identity.replace('%', '').replace('_', '!_')}%"
        named = select(identities.c.id).where(
            or_(identities.c.name.ilike(like, escape="!"), identities.c.id.ilike(like, escape="!"))
        )
        confirmed = select(reviews.c.result_id).where(reviews.c.identity_id.ilike(like, escape="!"))
        q = q.where(
            or_(
                results.c.top_identity.ilike(like, escape="!"),
                results.c.top_identity.in_(named),
                results.c.id.in_(confirmed),
            )
        )
    return q


# What a listing shows of each result (the queue, the API, a case), with its top candidate's name.
SUMMARY_COLUMNS = (
    results.c.id,
    results.c.device_id,
    results.c.captured_at,
    results.c.decision,
    results.c.top_identity,
    results.c.top_score,
    results.c.review_status,
    results.c.received_at,
    identities.c.name,
)


def summary_query(*extra: Any) -> Any:
    """SELECT the summary columns (and ``extra``) of results joined with their top candidate's identity."""
    return select(*SUMMARY_COLUMNS, *extra).outerjoin(identities, identities.c.id == results.c.top_identity)


def summary(r: Any) -> dict[str, Any]:
    """One row of :func:`summary_query` as the JSON a listing gives."""
    return {
        "id": r.id,
        "device_id": r.device_id,
        "captured_at": r.captured_at,
        "decision": r.decision,
        "top_identity": r.top_identity,
        "top_name": r.name,
        "top_score": r.top_score,
        "review_status": r.review_status,
        "received_at": r.received_at,
    }


def list_results(conn: Connection, f: Filters, *, limit: int = PAGE, offset: int = 0) -> tuple[list[Any], int]:
    base = apply_filters(select(results.c.id), f)
    total = conn.execute(select(func.count()).select_from(base.subquery())).scalar_one()
    q = apply_filters(summary_query(), f)
    rows = conn.execute(q.order_by(results.c.received_at.desc(), results.c.id.desc()).limit(limit).offset(offset)).all()
    return list(rows), int(total)
