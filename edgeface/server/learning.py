"""Learning from review: a confirmed probe becomes one of the person's gallery images.

The probe's face crop (the one the unit sent) goes through exactly what an uploaded enrollment image goes
through (gallery_admin: inspect_upload, store_uploads, enroll_stored: the header checks, the engine's
quality gate, the workspace, one audited ``images`` row), with its provenance: ``images.result_id``,
``source`` naming the result, the reviewers who confirmed it and when, and who added it. The next
published gallery carries it like any enrolled image.

Who may do it: an administrator. Deciding is the reviewer's job; adding an image changes what every unit
matches against, as an enrollment does, and enrollment is the administrator's. Keeping it there also means
a reviewer cannot plant a face in the gallery by confirming it (without the two-person rule one reviewer's
confirmation would suffice); the reviewers' confirmation is the evidence, the administrator's addition a
second look with a stated legal basis. A user holding both roles may do both.

Only a confirmed result qualifies (under the two-person rule: after the second confirmation). A refused
probe (quality gate, no face) leaves its audit entry but no image row or file: it is not a gallery image,
and the crop's copy must not outlive the crop's retention.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import delete, select

from ..errors import EdgefaceError, ImageError
from ..logs import get_logger
from . import audit
from .confirmations import ACCEPTED, confirmation_of, learnt_images
from .gallery_admin import discard_created, enroll_stored, inspect_upload, store_uploads
from .tables import identities, images, results

log = get_logger(__name__)


class LearnRefused(EdgefaceError):
    """A probe cannot be added to a gallery as asked; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Learnt:
    """A probe added to a person's gallery images (``status`` enrolled, or unchanged: already there)."""

    result_id: str
    identity_id: str
    status: str
    image_id: int
    sha256: str
    source: str
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _probe(payload: str, purged_at: float | None, result_id: str) -> bytes:
    crop = json.loads(payload).get("crop")
    if not crop:
        if purged_at:
            raise LearnRefused(
                f"result {result_id}: its face crop was removed by retention on {_iso(purged_at)} "
                "(server.retention.crops_days); enroll a photo of the person from the gallery page instead",
                409,
            )
        raise LearnRefused(
            f"result {result_id}: the unit sent no face crop (mqtt.include_crop was off); nothing to add", 409
        )
    try:
        return base64.b64decode(crop["data"], validate=True)
    except (binascii.Error, KeyError, TypeError):
        raise LearnRefused(f"result {result_id}: its face crop is not valid base64 data; nothing to add", 422) from None


def add_probe_to_gallery(svc: Any, result_id: str, actor: str, legal_basis: str) -> Learnt:
    """Add the confirmed probe of ``result_id`` to the confirmed person's gallery images (see the module
    docstring); ``legal_basis`` is required as for any enrolled image. Opens its own transactions and
    takes the engine lock: call it outside any database transaction. Raises :class:`LearnRefused`."""
    legal_basis = (legal_basis or "").strip()[:500]
    if not legal_basis:
        raise LearnRefused("consent or legal basis: required for every enrolled image, a probe included", 400)
    with svc.db.read() as conn:
        row = conn.execute(
            select(
                results.c.payload,
                results.c.crop_purged_at,
                results.c.review_status,
                results.c.device_id,
                results.c.captured_at,
            ).where(results.c.id == result_id)
        ).first()
        if row is None:
            raise LearnRefused(f"no result {result_id}", 404)
        conf = confirmation_of(conn, result_id)
        if conf is None:
            raise LearnRefused(
                f"result {result_id} is {row.review_status}, not confirmed: only a confirmed probe joins a gallery "
                "(under the two-person rule, after the second reviewer's confirmation)",
                409,
            )
        ident = conn.execute(select(identities).where(identities.c.id == conf.identity_id)).first()
        if ident is None:
            raise LearnRefused(
                f"{conf.identity_id} is not an identity on this server (the unit's gallery came from elsewhere); "
                "enroll it here first",
                409,
            )
        done = learnt_images(conn, [result_id]).get(result_id)
    if done is not None:
        raise LearnRefused(f"result {result_id}: its probe is already gallery image {done} of {ident.id}", 409)
    data = _probe(row.payload, row.crop_purged_at, result_id)
    try:
        upload = inspect_upload(f"probe of result {result_id}", data, svc.config.image)
    except ImageError as e:
        raise LearnRefused(str(e), 422) from None
    now = time.time()
    source = (
        f"review: probe of result {result_id} ({row.device_id}, captured {row.captured_at}), confirmed as "
        f"{conf.identity_id} by {', '.join(conf.reviewers)} at {_iso(conf.confirmed_at)}; added by {actor} "
        f"at {_iso(now)}"
    )
    created = store_uploads(svc.images_dir, [upload])
    try:
        report = enroll_stored(
            svc, ident.id, ident.name, source, legal_basis, [upload], actor=actor, result_id=result_id
        )[0]
    except BaseException:
        _discard(svc, created, result_id, refused_only=False)
        raise
    if report["status"] not in ACCEPTED:
        _discard(svc, created, result_id, refused_only=True)
        log.warning("server.learn_refused", result=result_id, identity=ident.id, reasons=report["reasons"])
        raise LearnRefused(
            f"the quality gate refused this probe ({'; '.join(report['reasons']) or report['status']}): "
            "it was not added; enroll a better photo of the person from the gallery page instead",
            422,
        )
    with svc.db.write() as conn:
        image_id = learnt_images(conn, [result_id])[result_id]
        audit.append(
            conn,
            actor,
            "review.learn",
            result_id,
            {
                "identity": ident.id,
                "image_id": image_id,
                "sha256": upload.sha256,
                "status": report["status"],
                "reviewers": conf.reviewers,
                "confirmed_at": conf.confirmed_at,
                "legal_basis": legal_basis,
            },
        )
    log.info("server.learnt", result=result_id, identity=ident.id, image=image_id, status=report["status"])
    return Learnt(result_id, ident.id, report["status"], image_id, upload.sha256, source, report["reasons"])


def _discard(svc: Any, created: list[Any], result_id: str, *, refused_only: bool) -> None:
    """Undo a refused or failed addition: its image rows (audit entries stay) and the files it created."""
    with svc.db.write() as conn:
        if refused_only:
            conn.execute(delete(images).where(images.c.result_id == result_id, images.c.status.notin_(ACCEPTED)))
        names = [p.name for p in created]
        referenced = {r[0] for r in conn.execute(select(images.c.filename).where(images.c.filename.in_(names)))}
    discard_created(svc.images_dir, created, referenced)
