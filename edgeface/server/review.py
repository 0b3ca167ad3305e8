"""The review queue: each candidate match beside the enrolled images, a person's decision, export.

A match is a lead. A reviewer confirms it (naming a candidate, any other identity or a new person: see
:mod:`edgeface.server.review_identity`), rejects it, or marks it unknown, with a comment; every decision is a row in ``reviews`` and an audit entry, in one transaction. With
``server.two_person_rule`` a confirmation counts only when a second reviewer, another person (see
:mod:`edgeface.server.people`: not the same owner, not created by or the creator of the first, not
holding a password the first set), confirms the same identity (status ``awaiting_second`` until then);
a rejection or "unknown" restarts the count.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import time
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, abort, g, redirect, render_template, request, send_file, url_for
from sqlalchemy import Connection, and_, select, update

from . import audit, auth, confirmations, people, review_chips, review_identity, review_nav
from .access import access
from .auth import User
from .cases import case_tags
from .review_identity import NEW_PERSON, ReviewError
from .review_query import PAGE, STATUSES, Filters, list_results
from .scores import Scores, payload_docs
from .services import services
from .tables import identities, images, results, reviews, users

bp = Blueprint("review", __name__)

VERDICTS = ("confirm", "reject", "unknown")


def decide(
    conn: Connection,
    result_id: str,
    user: User,
    verdict: str,
    identity_id: str | None,
    comment: str,
    *,
    two_person: bool,
    new_person: str | None = None,
) -> str:
    """Record a decision (in the caller's write transaction, with its audit entry); returns the new status.
    A confirmation names ``identity_id`` (a candidate, the first by default, or any identity on this server)
    or, with ``new_person`` (a name), a new identity pending enrollment created here."""
    if verdict not in VERDICTS:
        raise ReviewError(f"verdict must be one of {', '.join(VERDICTS)}")
    row = conn.execute(select(results).where(results.c.id == result_id).with_for_update()).first()
    if row is None:
        raise ReviewError(f"no result {result_id}")
    comment = (comment or "").strip()[:2000]
    candidates = [c["identity_id"] for c in json.loads(row.payload)["candidates"]]
    match = None
    if verdict == "confirm":
        identity_id, match = review_identity.confirmed_identity(
            conn, result_id, candidates, identity_id or None, new_person, user.username
        )
    else:
        identity_id = None
    status = {"reject": "rejected", "unknown": "unknown"}.get(verdict, "confirmed")
    if verdict == "confirm" and two_person:
        history = conn.execute(
            select(reviews.c.user_id, reviews.c.verdict, reviews.c.identity_id)
            .where(reviews.c.result_id == result_id)
            .order_by(reviews.c.id)
        ).all()
        agreeing: set[int] = set()
        for h in history:  # confirmations since the last rejection/unknown, for this identity
            if h.verdict != "confirm":
                agreeing.clear()
            elif h.identity_id == identity_id:
                agreeing.add(int(h.user_id))
        if user.id in agreeing:
            raise ReviewError(
                "you already confirmed this candidate; under the two-person rule a second, "
                "different reviewer must confirm it"
            )
        why = people.related(conn, user.id, agreeing)
        if why:
            raise ReviewError(
                f"under the two-person rule the second confirmation must come from another person, "
                f"and {why}; a reviewer who is a different person must confirm it"
            )
        status = "confirmed" if agreeing else "awaiting_second"
    now = time.time()
    conn.execute(
        reviews.insert().values(
            result_id=result_id,
            user_id=user.id,
            verdict=verdict,
            identity_id=identity_id,
            comment=comment,
            created_at=now,
        )
    )
    conn.execute(update(results).where(results.c.id == result_id).values(review_status=status, reviewed_at=now))
    me = people.accounts(conn, [user.id]).get(user.id)
    audit.append(
        conn,
        user.username,
        f"review.{verdict}",
        result_id,
        {
            "identity": identity_id,
            "comment": comment,
            "status": status,
            "device": row.device_id,
            "score": row.top_score,
            "two_person_rule": two_person,
            **({"match": match, "candidates": candidates} if match else {}),
            "reviewer_owner": me.owner if me else None,
            "reviewer_created_by": _creator(conn, me.created_by) if me else None,
        },
    )
    return status


def _creator(conn: Connection, uid: int | None) -> str:
    if uid is None:
        return "command line"
    return str(conn.execute(select(users.c.username).where(users.c.id == uid)).scalar())


@bp.route("/review")
@access("reviewer")
def queue() -> Any:
    f = Filters.from_args(request.args)
    page = max(1, request.args.get("page", 1, type=int))
    with services().db.read() as conn:
        rows, total = list_results(conn, f, offset=(page - 1) * PAGE)
        devices = [r[0] for r in conn.execute(select(results.c.device_id).distinct().order_by(results.c.device_id))]
        docs = payload_docs(conn, [r.id for r in rows])
    scores, cases = {rid: Scores.of(doc) for rid, doc in docs.items()}, case_tags(docs)
    crops = {rid for rid, doc in docs.items() if doc.get("crop")}
    return render_template(
        "review_list.html",
        rows=rows,
        scores=scores,
        cases=cases,
        crops=crops,
        total=total,
        f=f,
        page=page,
        pages=max(1, -(-total // PAGE)),
        devices=devices,
        statuses=STATUSES,
        query=f.as_query(),
        bulk_max=BULK_MAX,
        rejected=request.args.get("rejected", type=int),
        skipped=request.args.get("skipped", type=int),
    )


SHOWN_PER_CANDIDATE = 3
SHOWN_STATUSES = ("enrolled", "unchanged")


def shown_images(conn: Connection, candidates: list[str]) -> dict[str, list[int]]:
    """The enrolled images a review of these candidates shows: the first few accepted images of each.
    Never refused uploads, never another identity's: this is all a reviewer can open."""
    out: dict[str, list[int]] = {}
    if not candidates:
        return out
    for r in conn.execute(
        select(images.c.identity_id, images.c.id)
        .where(and_(images.c.identity_id.in_(candidates), images.c.status.in_(SHOWN_STATUSES)))
        .order_by(images.c.id)
    ):
        shown = out.setdefault(r.identity_id, [])
        if len(shown) < SHOWN_PER_CANDIDATE:
            shown.append(int(r.id))
    return out


def _candidates(payload: str) -> list[str]:
    return [c["identity_id"] for c in json.loads(payload)["candidates"]]


@bp.route("/review/<rid>")
@access("reviewer")
def detail(rid: str) -> Any:
    svc = services()
    with svc.db.read() as conn:
        row = conn.execute(select(results).where(results.c.id == rid)).first()
        if row is None:
            abort(404)
        doc = json.loads(row.payload)
        ids = _candidates(row.payload)
        names = dict(conn.execute(select(identities.c.id, identities.c.name).where(identities.c.id.in_(ids))).all())
        others = review_identity.other_choices(conn, rid, ids, request.args.get("who", ""))
        confirmed = confirmations.confirmation_of(conn, rid)
        learnt = confirmations.learnt_images(conn, [rid]).get(rid)
        imgs = shown_images(conn, ids)
        nav = review_nav.neighbours(conn, rid)
        history = conn.execute(
            select(reviews, users.c.username)
            .join(users, users.c.id == reviews.c.user_id)
            .where(reviews.c.result_id == rid)
            .order_by(reviews.c.id)
        ).all()
    shown = [i for ident in ids for i in imgs.get(ident, [])]
    if shown:  # one entry per page view, listing every enrolled image it showed
        with svc.db.write() as conn:
            audit.append(
                conn,
                g.user.username,
                "images.view",
                f"review/{rid}",
                {"images": shown, "identities": [i for i in ids if i in imgs]},
            )
    tokens = {i: auth.view_token(g.session.csrf_token, f"review/{rid}", i) for i in shown}
    return render_template(
        "review_detail.html",
        r=row,
        doc=doc,
        scores=Scores.of(doc),
        names=names,
        imgs=imgs,
        tokens=tokens,
        history=history,
        two_person=svc.config.server.two_person_rule,
        error=request.args.get("error"),
        nav=nav,
        decided=request.args.get("decided", "")[:64],
        others=others,
        new_person=NEW_PERSON,
        confirmed=confirmed,
        learnt=learnt,
    )


@bp.route("/review/<rid>/images/<int:image_id>")
@access("reviewer")
def image(rid: str, image_id: int) -> Any:
    """An enrolled image of one of this result's candidates, as its (audited) review page showed it."""
    return send_image(_shown_image(rid, image_id))


@bp.route("/review/<rid>/images/<int:image_id>/chip.png")
@access("reviewer")
def image_chip(rid: str, image_id: int) -> Any:
    """That image's face aligned as the units align it (the image itself when no face is found)."""
    path = _shown_image(rid, image_id)
    if not path.is_file():
        abort(404)
    return _chip_or(path.read_bytes(), lambda: send_image(path))


@bp.route("/review/<rid>/probe-chip.png")
@access("reviewer")
def probe_chip(rid: str) -> Any:
    """The probe crop's face aligned as the units align it (the crop itself when no face is found)."""
    data = _crop_bytes(rid)
    return _chip_or(data, lambda: Response(data, mimetype="image/jpeg", headers={"Cache-Control": NO_STORE}))


NO_STORE = "private, no-store"


def _chip_or(data: bytes, fallback: Any) -> Any:
    png = review_chips.aligned_chip(services(), data)
    if not png:
        return fallback()
    return Response(png, mimetype="image/png", headers={"Cache-Control": NO_STORE})


def _shown_image(rid: str, image_id: int) -> Path:
    """The file of an image this result's review page shows, for the page's own token (else 404/403)."""
    svc = services()
    with svc.db.read() as conn:
        payload = conn.execute(select(results.c.payload).where(results.c.id == rid)).scalar()
        if payload is None:
            abort(404)
        shown = {i for ids in shown_images(conn, _candidates(payload)).values() for i in ids}
        fname = conn.execute(select(images.c.filename).where(images.c.id == image_id)).scalar()
    if image_id not in shown or fname is None:
        abort(404)  # a refused upload, another identity's image or too far down the list: not this review's
    if not auth.view_token_ok(g.session.csrf_token, f"review/{rid}", image_id, request.args.get("t")):
        abort(403, "Open images from the review page that shows them.")
    return Path(svc.images_dir / fname)


def send_image(path: Path) -> Any:
    if not path.is_file():
        abort(404)
    resp = send_file(path, max_age=0)
    resp.headers["Cache-Control"] = "private, no-store"
    return resp


@bp.route("/review/<rid>/decide", methods=["POST"])
@access("reviewer")
def decide_view(rid: str) -> Any:
    svc = services()
    ident = request.form.get("identity") or None
    try:
        with svc.db.write() as conn:
            decide(
                conn,
                rid,
                g.user,
                request.form.get("verdict", ""),
                None if ident == NEW_PERSON else ident,
                request.form.get("comment", ""),
                two_person=svc.config.server.two_person_rule,
                new_person=request.form.get("new_person", "") if ident == NEW_PERSON else None,
            )
    except ReviewError as e:
        return redirect(url_for("review.detail", rid=rid, error=str(e)))
    if request.form.get("next_pending"):  # decide-and-next: the page goes on to the next pending match
        with svc.db.read() as conn:
            after = review_nav.after_decision(conn, rid)
        if after:
            return redirect(url_for("review.detail", rid=after, decided=rid))
    return redirect(url_for("review.detail", rid=rid, decided=rid))


@bp.route("/review/pending.json")
@access("reviewer")
def pending() -> Any:
    """The counts the pages refresh: pending matches and results awaiting a second confirmation."""
    with services().db.read() as conn:
        return review_nav.pending_count(conn)


BULK_MAX = 200


@bp.route("/review/bulk-reject", methods=["POST"])
@access("reviewer")
def bulk_reject() -> Any:
    """Reject the selected results in one go: obvious non-matches only waste a reviewer's time one by one.
    Never a bulk confirmation (each confirmation is a person looking at one face). Only pending results:
    one awaiting its second confirmation, or decided meanwhile by someone else, is left as it is and
    counted as skipped. Each rejection is its own review row and audit entry, as one by one."""
    ids = list(dict.fromkeys(request.form.getlist("ids")))
    if not ids:
        abort(400, "select the results to reject (the boxes in the queue's first column)")
    if len(ids) > BULK_MAX:
        abort(400, f"at most {BULK_MAX} results at a time; select fewer")
    svc = services()
    comment = request.form.get("comment", "") or "bulk reject from the queue"
    done = 0
    with svc.db.write() as conn:
        open_ids = set(
            conn.execute(
                select(results.c.id).where(results.c.id.in_(ids), results.c.review_status == "pending")
            ).scalars()
        )
        for rid in ids:
            if rid in open_ids:
                decide(conn, rid, g.user, "reject", None, comment, two_person=svc.config.server.two_person_rule)
                done += 1
    keys = (*Filters.__dataclass_fields__, "page")  # the queue's own filters only, never url_for's arguments
    query: dict[str, Any] = {k: request.form[f"q_{k}"] for k in keys if request.form.get(f"q_{k}")}
    return redirect(url_for("review.queue", rejected=done, skipped=len(ids) - done, **query))


@bp.route("/review/<rid>/crop.jpg")
@access("reviewer")
def crop(rid: str) -> Any:
    return Response(_crop_bytes(rid), mimetype="image/jpeg", headers={"Cache-Control": NO_STORE})


def _crop_bytes(rid: str) -> bytes:
    """The face crop the unit sent with ``rid`` (404 when there is none: not sent, or removed by retention)."""
    with services().db.read() as conn:
        payload = conn.execute(select(results.c.payload).where(results.c.id == rid)).scalar()
    if payload is None:
        abort(404)
    c = json.loads(payload).get("crop")
    if not c:
        abort(404)
    try:
        return base64.b64decode(c["data"], validate=True)
    except (binascii.Error, KeyError, TypeError):
        abort(404)


EXPORT_COLUMNS = (
    "id",
    "device_id",
    "captured_at",
    "decision",
    "top_identity",
    "top_name",
    "top_score",
    "top_normalised",
    "score_space",
    "threshold",
    "frames_fused",
    "review_status",
    "last_verdict",
    "last_reviewer",
    "last_comment",
    "case",
    "case_source",
    "lat",
    "lon",
    "location_source",
    "gallery_version",
    "model_id",
)


@bp.route("/review/export")
@access("reviewer")
def export() -> Any:
    fmt = request.args.get("format", "csv")
    if fmt not in ("csv", "json"):
        abort(400, "format is csv or json")
    f = Filters.from_args(request.args)
    svc = services()
    with svc.db.read() as conn:
        rows, _ = list_results(conn, f, limit=100_000)
        ids = [r.id for r in rows]
        last: dict[str, Any] = {}
        for chunk in range(0, len(ids), 500):
            for rv in conn.execute(
                select(reviews.c.result_id, reviews.c.verdict, reviews.c.comment, users.c.username)
                .join(users, users.c.id == reviews.c.user_id)
                .where(reviews.c.result_id.in_(ids[chunk : chunk + 500]))
                .order_by(reviews.c.id)
            ):
                last[rv.result_id] = rv
        docs = payload_docs(conn, ids)
    out = []
    for r in rows:
        doc = docs[r.id]
        sc = Scores.of(doc)
        loc, case = doc.get("location") or {}, doc.get("case") or {}
        lv = last.get(r.id)
        out.append(
            {
                "id": r.id,
                "device_id": r.device_id,
                "captured_at": r.captured_at,
                "decision": r.decision,
                "top_identity": r.top_identity,
                "top_name": r.name,
                "top_score": r.top_score,  # raw cosine, whichever score the decision used
                "top_normalised": sc.top_normalised,
                "score_space": sc.space,
                "threshold": sc.threshold,  # in score_space
                "frames_fused": sc.frames_fused,
                "review_status": r.review_status,
                "last_verdict": lv.verdict if lv else None,
                "last_reviewer": lv.username if lv else None,
                "last_comment": lv.comment if lv else None,
                "case": case.get("tag"),
                "case_source": case.get("source"),
                "lat": loc.get("lat"),
                "lon": loc.get("lon"),
                "location_source": loc.get("source"),
                "gallery_version": doc.get("gallery_version"),
                "model_id": doc.get("model_id"),
            }
        )
    with svc.db.write() as conn:
        audit.append(conn, g.user.username, "results.export", fmt, {"filters": f.as_dict(), "rows": len(out)})
    name = time.strftime("edgeface-results-%Y%m%dT%H%M%SZ", time.gmtime())
    if fmt == "json":
        body = json.dumps({"filters": f.as_dict(), "results": out}, ensure_ascii=False, indent=1)
        return Response(
            body, mimetype="application/json", headers={"Content-Disposition": f'attachment; filename="{name}.json"'}
        )
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=EXPORT_COLUMNS)
    w.writeheader()
    for row in out:  # neutralise spreadsheet formulas in free text
        w.writerow({k: ("'" + v if isinstance(v, str) and v[:1] in "=+-@\t\r" else v) for k, v in row.items()})
    return Response(
        buf.getvalue(), mimetype="text/csv", headers={"Content-Disposition": f'attachment; filename="{name}.csv"'}
    )
