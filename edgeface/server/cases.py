"""Cases: every result a field team tied to one case or body, and the list of cases.

A unit puts ``case: {tag, source}`` on a result (the trigger's tag, a QR code or barcode in the photo,
the folder it was filed in, the MQTT capture command). The ingest keeps the payload whole, so the tag is
read from it with the database's JSON function (SQLite ``json_extract``, PostgreSQL
``json_extract_path_text``): no column, no migration, results from before carry none. These pages scan
the results table; that is fine for a case review, not for a dashboard refreshed every second.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, abort, render_template, request
from sqlalchemy import JSON, ColumnElement, cast, func, select
from sqlalchemy import case as sa_case

from .access import access
from .review_query import summary, summary_query
from .scores import Scores
from .services import services
from .tables import results

bp = Blueprint("cases", __name__)

MAX_ROWS = 5000  # results shown for one case (newest first); the export has them all


def case_expr(is_sqlite: bool) -> ColumnElement[Any]:
    """The results' case tag, read from the stored payload (NULL where none)."""
    if is_sqlite:
        return func.json_extract(results.c.payload, "$.case.tag")
    return func.json_extract_path_text(cast(results.c.payload, JSON), "case", "tag")


def case_of(doc: dict[str, Any]) -> dict[str, str] | None:
    """A payload's ``case`` object, None when it has none."""
    c = doc.get("case")
    return c if isinstance(c, dict) and c.get("tag") else None


def case_tags(docs: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Result id -> case tag, for the payloads that carry one (the review queue's column)."""
    return {rid: c["tag"] for rid, doc in docs.items() if (c := case_of(doc)) is not None}


def list_cases(svc: Any) -> list[dict[str, Any]]:
    """Every case tag results carry: how many results, the newest capture, how many still to review."""
    expr = case_expr(svc.db.is_sqlite)
    pending = func.sum(sa_case((results.c.review_status == "pending", 1), else_=0))
    q = (
        select(
            expr.label("tag"),
            func.count().label("results"),
            pending.label("pending"),
            func.max(results.c.captured_at).label("last_captured"),
        )
        .where(expr.is_not(None))
        .group_by(expr)
    )
    with svc.db.read() as conn:
        rows = conn.execute(q.order_by(func.max(results.c.captured_at).desc())).all()
    return [
        {"tag": r.tag, "results": int(r.results), "pending": int(r.pending or 0), "last_captured": r.last_captured}
        for r in rows
    ]


def case_results(svc: Any, tag: str) -> list[dict[str, Any]]:
    """Every result of case ``tag`` (up to MAX_ROWS), newest capture first; 404 when none carries it."""
    if not tag or len(tag) > 128:
        abort(404)
    expr = case_expr(svc.db.is_sqlite)
    q = (
        summary_query(results.c.payload)
        .where(expr == tag)
        .order_by(results.c.captured_ts.desc(), results.c.id)
        .limit(MAX_ROWS)
    )
    with svc.db.read() as conn:
        rows = conn.execute(q).all()
    if not rows:
        abort(404, f"No results carry the case tag {tag!r}.")
    out = []
    for r in rows:
        doc = json.loads(r.payload)
        case = case_of(doc) or {}
        out.append(
            {
                **summary(r),
                "case_source": case.get("source"),
                "location": doc.get("location"),
                "source": doc.get("source"),
                "frames_fused": Scores.of(doc).frames_fused,
            }
        )
    return out


@bp.route("/cases")
@access("reviewer")
def index() -> Any:
    """Every case tag results carry: how many results, the newest capture, how many still to review."""
    cases = list_cases(services())
    if request.args.get("format") == "json":
        return {"cases": cases}
    return render_template("cases.html", cases=cases)


@bp.route("/cases/<path:tag>")
@access("reviewer")
def detail(tag: str) -> Any:
    """Every result of case ``tag``, newest capture first, with its decision, place and review status."""
    out = case_results(services(), tag)
    if request.args.get("format") == "json":
        return {"case": tag, "results": out}
    return render_template("case.html", tag=tag, rows=out, limit=MAX_ROWS)
