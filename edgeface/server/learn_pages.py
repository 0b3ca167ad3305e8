"""The administrator's pages for learning from review (see learning.py for why it is theirs): the
confirmed probes, each with its confirmation and whether it is a gallery image yet, and adding one."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, g, render_template, request
from sqlalchemy import select

from . import confirmations
from .access import access
from .learning import LearnRefused, add_probe_to_gallery
from .review import NO_STORE, _crop_bytes
from .scores import payload_docs
from .services import services
from .tables import results

bp = Blueprint("learn", __name__)

SHOWN = 50  # the newest confirmations the page lists


@bp.route("/gallery/learn")
@access("admin")
def index() -> Any:
    with services().db.read() as conn:
        rows = conn.execute(
            select(
                results.c.id,
                results.c.device_id,
                results.c.captured_ts,
                results.c.reviewed_at,
                results.c.crop_purged_at,
            )
            .where(results.c.review_status == "confirmed")
            .order_by(results.c.reviewed_at.desc())
            .limit(SHOWN)
        ).all()
        ids = [r.id for r in rows]
        crops = {rid for rid, doc in payload_docs(conn, ids).items() if doc.get("crop")}
        confirmed = {rid: confirmations.confirmation_of(conn, rid) for rid in ids}
        learnt = confirmations.learnt_images(conn, ids)
    return render_template("learn.html", rows=rows, crops=crops, confirmed=confirmed, learnt=learnt)


@bp.route("/gallery/learn/<rid>/probe.jpg")
@access("admin")
def probe(rid: str) -> Any:
    """The probe crop as the unit sent it, for the administrator deciding whether it joins a gallery."""
    return Response(_crop_bytes(rid), mimetype="image/jpeg", headers={"Cache-Control": NO_STORE})


@bp.route("/gallery/learn/<rid>", methods=["POST"])
@access("admin")
def add(rid: str) -> Any:
    """Add a confirmed probe to the person's gallery images; a refusal is answered with its status and why."""
    try:
        learnt = add_probe_to_gallery(services(), rid, g.user.username, request.form.get("consent", ""))
    except LearnRefused as e:
        if e.status == 404:
            abort(404, str(e))
        return render_template("learn_result.html", rid=rid, learnt=None, refused=str(e)), e.status
    return render_template("learn_result.html", rid=rid, learnt=learnt, refused=None)
