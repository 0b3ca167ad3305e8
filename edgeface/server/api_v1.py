"""The JSON API, version 1 (``/api/v1``): results and decisions, cases, the audit log, devices, search by
photo. Identities, enrollment and publishing are in :mod:`.api_v1_gallery`; the OpenAPI document that
describes every route is :mod:`.openapi` (served here, and checked against the routes by the tests).

Each view is a thin JSON shell over the function its page uses (the same filters, the same two-person
rule, the same audit entries); authentication is the bearer token of :mod:`.api_guard`, so ``g.user``
is the token's user with the token's roles.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from flask import Blueprint, Response, abort, g, jsonify, request
from sqlalchemy import select

from ..errors import EdgefaceError
from . import audit, fleet, review, review_nav
from .access import API, PUBLIC, access
from .cases import case_results, list_cases
from .review_query import Filters, list_results, summary
from .scores import Scores
from .services import services
from .tables import identities, results, reviews, users

bp = Blueprint("api", __name__, url_prefix="/api/v1")

MAX_PER_PAGE = 200
MAX_AUDIT = 1000


def body() -> dict[str, Any]:
    """The request's JSON object (400 when the body is not one)."""
    doc = request.get_json(silent=True)
    if not isinstance(doc, dict):
        abort(400, "send a JSON object with Content-Type: application/json")
    return doc


def created(doc: dict[str, Any]) -> Response:
    resp = jsonify(doc)
    resp.status_code = 201
    return resp


@bp.route("/openapi.json")
@access(PUBLIC)
def openapi_document() -> Any:
    """The API's description. Public: it says what the routes are, never what they hold, and a client
    generator or a person should read it before they have a token."""
    from .openapi import document

    return jsonify(document())


# -- results and decisions ------------------------------------------------------------------------------


@bp.route("/results")
@access(API, "reviewer")
def results_list() -> Any:
    """Results with the queue's filters (default: pending matches), newest received first, a page at a time."""
    f = Filters.from_args(request.args)
    page = request.args.get("page", 1, type=int)
    per_page = request.args.get("per_page", 50, type=int)
    if page < 1 or not 1 <= per_page <= MAX_PER_PAGE:
        abort(400, f"page is 1 or more and per_page 1 to {MAX_PER_PAGE}")
    with services().db.read() as conn:
        rows, total = list_results(conn, f, limit=per_page, offset=(page - 1) * per_page)
    return {
        "results": [summary(r) for r in rows],
        "total": total,
        "page": page,
        "per_page": per_page,
        "pages": max(1, -(-total // per_page)),
        "filters": f.as_dict(),
    }


@bp.route("/results/<rid>")
@access(API, "reviewer")
def result_one(rid: str) -> Any:
    """One result: its payload (without the crop's bytes), candidates with names, scores and review history."""
    with services().db.read() as conn:
        row = conn.execute(
            select(results, identities.c.name)
            .outerjoin(identities, identities.c.id == results.c.top_identity)
            .where(results.c.id == rid)
        ).first()
        if row is None:
            abort(404, f"no result {rid!r}")
        doc = json.loads(row.payload)
        ids = [c["identity_id"] for c in doc.get("candidates") or []]
        names = dict(conn.execute(select(identities.c.id, identities.c.name).where(identities.c.id.in_(ids))).all())
        history = conn.execute(
            select(reviews, users.c.username)
            .join(users, users.c.id == reviews.c.user_id)
            .where(reviews.c.result_id == rid)
            .order_by(reviews.c.id)
        ).all()
    crop = doc.pop("crop", None)
    sc = Scores.of(doc)
    return {
        **summary(row),
        "candidates": [{**c, "name": names.get(c["identity_id"])} for c in doc.get("candidates") or []],
        "scores": {
            "space": sc.space,
            "threshold": sc.threshold,
            "top_normalised": sc.top_normalised,
            "frames_fused": sc.frames_fused,
        },
        "has_crop": bool(crop),
        "payload": doc,
        "reviews": [
            {
                "reviewer": h.username,
                "verdict": h.verdict,
                "identity_id": h.identity_id,
                "comment": h.comment,
                "created_at": h.created_at,
            }
            for h in history
        ],
    }


@bp.route("/results/<rid>/crop.jpg")
@access(API, "reviewer")
def result_crop(rid: str) -> Any:
    """The face crop the unit sent (404 when it sent none or retention removed it)."""
    data = review._crop_bytes(rid)
    return Response(data, mimetype="image/jpeg", headers={"Cache-Control": "private, no-store"})


@bp.route("/results/<rid>/decisions", methods=["POST"])
@access(API, "reviewer")
def decision(rid: str) -> Any:
    """Record a decision exactly as the review page does (two-person rule, review row, audit entry)."""
    doc = body()
    verdict = doc.get("verdict")
    if verdict not in review.VERDICTS:
        abort(400, f"verdict must be one of {', '.join(review.VERDICTS)}")
    identity, new_person, comment = doc.get("identity"), doc.get("new_person"), doc.get("comment", "")
    if not all(v is None or isinstance(v, str) for v in (identity, new_person)) or not isinstance(comment, str):
        abort(400, "identity, new_person and comment are strings")
    svc = services()
    with svc.db.read() as conn:
        if conn.execute(select(results.c.id).where(results.c.id == rid)).first() is None:
            abort(404, f"no result {rid!r}")
    try:
        with svc.db.write() as conn:
            status = review.decide(
                conn,
                rid,
                g.user,
                verdict,
                identity or None,
                comment,
                two_person=svc.config.server.two_person_rule,
                new_person=new_person or None,
            )
            confirmed = conn.execute(
                select(reviews.c.identity_id).where(reviews.c.result_id == rid).order_by(reviews.c.id.desc()).limit(1)
            ).scalar()
    except review.ReviewError as e:
        abort(409, str(e))
    with svc.db.read() as conn:
        after = review_nav.after_decision(conn, rid)
    return created({"result_id": rid, "status": status, "identity": confirmed, "next_pending": after})


@bp.route("/results/pending-count")
@access(API, "reviewer")
def pending_count() -> Any:
    """Pending matches and results awaiting a second confirmation (what the pages' counter shows)."""
    with services().db.read() as conn:
        return review_nav.pending_count(conn)


# -- cases, audit, devices, search ----------------------------------------------------------------------


@bp.route("/cases")
@access(API, "reviewer")
def cases_list() -> Any:
    return {"cases": list_cases(services())}


@bp.route("/cases/<path:tag>")
@access(API, "reviewer")
def case_one(tag: str) -> Any:
    return {"case": tag, "results": case_results(services(), tag)}


@bp.route("/audit")
@access(API, "reviewer", "admin")
def audit_export() -> Any:
    """Audit entries newest first (``before``: older than that seq) and the whole chain's verification."""
    limit = request.args.get("limit", 200, type=int)
    before = request.args.get("before", type=int)
    if not 1 <= limit <= MAX_AUDIT:
        abort(400, f"limit is 1 to {MAX_AUDIT}")
    with services().db.read() as conn:
        found = audit.entries(conn, limit=limit, before=before, action=request.args.get("action") or None)
        check = audit.verify(conn)
    return {
        "entries": [dataclasses.asdict(e) for e in found],
        "verify": check.as_dict(),
        "next_before": found[-1].seq if len(found) == limit else None,
    }


@bp.route("/devices")
@access(API, "reviewer", "admin")
def devices_list() -> Any:
    with services().db.read() as conn:
        return {"devices": fleet.device_rows(conn), "latest_gallery_version": fleet.latest_version(conn)}


@bp.route("/devices", methods=["POST"])
@access(API, "admin")
def device_credential() -> Any:
    """A new bundle-download token for a device (replacing an earlier one), shown once; audited."""
    device_id = body().get("device_id")
    if not isinstance(device_id, str):
        abort(400, "give device_id, the unit's id")
    try:
        token = fleet.issue_credential(services(), g.user.username, device_id.strip())
    except EdgefaceError as e:
        abort(400, str(e))
    return created({"device_id": device_id.strip(), "token": token})


@bp.route("/devices/<device_id>/revoke", methods=["POST"])
@access(API, "admin")
def device_revoke(device_id: str) -> Any:
    """Downloads refused, a signed 'revoke' sent, the broker account cut off: as the fleet page's button."""
    from . import commands

    svc = services()
    try:
        done = commands.revoke(svc.config, svc.db, device_id, g.user.username)
    except EdgefaceError as e:
        abort(400, str(e))
    return {
        "device_id": device_id,
        "known": done.known,
        "command_sent": done.told.ok,
        "command_why": done.told.why or None,
        "broker_cut_off": done.cut_off.ok,
        "broker_why": done.cut_off.why or None,
    }


@bp.route("/search", methods=["POST"])
@access(API, "reviewer", "admin")
def search() -> Any:
    """Search by photo (multipart ``photo``) or by a stored result's crop (form field ``result``); audited."""
    from .photo_search import search_requested

    outcome = search_requested("send a photo (multipart field 'photo') or a result id (field 'result')")
    return dataclasses.asdict(outcome)
