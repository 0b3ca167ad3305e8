"""Search by photo: a reviewer uploads a photo and sees, for each face in it, the top candidates of the
current published gallery, with scores and aligned face chips (issue 16 item 3).

The same engine and thresholds as a unit: the first embedder the fleet runs (``server.embedders``), its
latest published bundle opened and verified with the server's own public key exactly as a unit opens it
(:meth:`Gallery.open` with ``gallery.*``'s search settings and thresholds), and the unit's steps for one
frame (:func:`edgeface.api.identify`). Every search is audited (the photo's SHA-256, never the photo; the
candidates and scores shown); the photo is not kept.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from flask import Blueprint, abort, g, render_template, request
from sqlalchemy import select

from ..errors import EdgefaceError, GalleryError, ImageError
from ..logs import get_logger
from . import audit
from .access import access
from .services import Services, services
from .tables import identities, images, results

log = get_logger(__name__)

bp = Blueprint("search", __name__)


@dataclass
class FaceHit:
    """One face of the photo: where it is, its quality verdict, its aligned chip and candidates."""

    box: list[float]
    verdict: str  # match, no_match, refused
    chip: str  # data: URI of the aligned chip (PNG)
    threshold: float | None
    space: str
    candidates: list[dict[str, Any]] = field(default_factory=list)
    refusal: str = ""


@dataclass
class SearchOutcome:
    sha256: str
    gallery_version: int
    embedder: str
    faces: list[FaceHit]


def _png_uri(chip: np.ndarray) -> str:
    import cv2

    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(chip), cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - PNG encoding of a uint8 array does not fail
        return ""
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode()


def current_gallery(svc: Services, card: Any) -> Any:
    """The latest published bundle of ``card``'s embedder, verified as a unit verifies it (kept open per
    version in this process; call with ``svc.engine_lock`` held)."""
    from ..gallery import signing
    from ..gallery.match import Gallery
    from ..gallery.publish import read_pointer
    from ..gallery.store import unit_embedder

    folder = svc.publish_dir / card.id
    ptr = read_pointer(folder)
    if ptr is None:
        raise GalleryError("no gallery is published yet: an administrator publishes one on the Gallery page")
    cache: dict[str, Any] = svc.__dict__.setdefault("_search_galleries", {})
    held = cache.get(card.id)
    if held is not None and held.version == ptr.version:
        return held
    public = signing.load_private_key(Path(svc.config.server.signing_key)).public_key()
    gc = svc.config.gallery
    opened = Gallery.open(
        folder / ptr.bundle,
        [public],
        embedder=unit_embedder(card),
        exact_max=gc.exact_max,
        search_k=gc.search_k,
        top_k=gc.top_k,
        threshold=gc.threshold,
        normalised_threshold=gc.normalised_threshold,
    )
    if held is not None:
        held.close()
    cache[card.id] = opened
    return opened


def _enrolled_chip(svc: Services, engine: Any, sha: str) -> str:
    """The aligned chip of an enrolled image (its largest face), or '' when it cannot be made."""
    with svc.db.read() as conn:
        row = conn.execute(select(images.c.filename).where(images.c.sha256 == sha).limit(1)).first()
    if row is None:
        return ""
    try:
        img = engine.load_image(svc.images_dir / row.filename)
        faces = engine.detect(img)
    except (ImageError, OSError):
        return ""
    if not faces:
        return ""
    face = max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
    return _png_uri(engine.align(img, face))


def search_photo(svc: Services, data: bytes) -> SearchOutcome:
    """Every face in the photo ``data`` compared with the current gallery. Raises ImageError for a photo
    that cannot be read, GalleryError when nothing is published."""
    from ..api import identify
    from .embedders import engine_for, fleet_cards

    sha = hashlib.sha256(data).hexdigest()
    card = fleet_cards(svc.config)[0]
    with svc.engine_lock:
        engine = engine_for(svc, card)
        gallery = current_gallery(svc, card)
        image = engine.load_image(data)
        found = identify(image, gallery=gallery, engine=engine)
        faces = []
        for ident in found:
            d = ident.decision
            hit = FaceHit(
                [round(float(v), 1) for v in ident.face.box],
                ident.verdict,
                _png_uri(engine.align(image, ident.face)),
                None if d is None else float(d.threshold),
                "cosine" if d is None else d.space,
                refusal="; ".join(ident.quality.reasons) if d is None else "",
            )
            for c in ident.candidates:
                entry = gallery.entry(c.row)
                hit.candidates.append(
                    {
                        "identity": c.identity,
                        "name": c.name,
                        "score": float(c.score),
                        "normalised": None if c.normalised is None else float(c.normalised),
                        "match": d is not None and d.match is not None and d.match.identity == c.identity,
                        "chip": _enrolled_chip(svc, engine, str(entry.get("image", ""))),
                    }
                )
            faces.append(hit)
        version = gallery.version
    return SearchOutcome(sha, version, card.id, faces)


def _result_crop(rid: str) -> bytes:
    """The face crop a unit sent with a stored result (404 when there is no such result or crop)."""
    with services().db.read() as conn:
        payload = conn.execute(select(results.c.payload).where(results.c.id == rid)).scalar()
    if payload is None:
        abort(404, f"no result {rid!r}")
    crop = json.loads(payload).get("crop") or {}
    try:
        return base64.b64decode(crop["data"], validate=True)
    except (binascii.Error, KeyError, TypeError):
        abort(404, f"result {rid} has no face crop (the unit sent none, or retention removed it)")


def _names(ids: list[str]) -> dict[str, str]:
    with services().db.read() as conn:
        return dict(conn.execute(select(identities.c.id, identities.c.name).where(identities.c.id.in_(ids))).all())


def search_audited(svc: Services, actor: str, rid: str, upload: Any) -> SearchOutcome:
    """A search as a reviewer asks for it (the page and the API): with stored result ``rid``'s face crop,
    else the uploaded file ``upload``; its size and pixels checked before decoding; audited. Raises
    UploadRefused, GalleryError (nothing published) or EdgefaceError (a photo that cannot be read)."""
    from .gallery_admin import inspect_uploads

    if rid:
        data, name = _result_crop(rid), f"result {rid}"
    else:
        data, name = upload.read(), upload.filename
    inspect_uploads([(name, data)], svc.config.image)  # size and pixel limits before decoding
    outcome = search_photo(svc, data)
    shown = [[(c["identity"], round(c["score"], 4)) for c in face.candidates] for face in outcome.faces]
    with svc.db.write() as conn:
        audit.append(
            conn,
            actor,
            "search.photo",
            outcome.sha256,
            {
                "gallery_version": outcome.gallery_version,
                "embedder": outcome.embedder,
                "faces": len(outcome.faces),
                "result": rid or None,  # searched with this stored result's face crop
                "verdicts": [face.verdict for face in outcome.faces],
                "candidates": shown,
            },
        )
    log.info("server.photo_search", user=actor, faces=len(outcome.faces), gallery=outcome.gallery_version)
    return outcome


def search_requested(missing: str) -> SearchOutcome:
    """The audited search a page's form or an API request asks for: an uploaded ``photo``, or the crop of
    the stored ``result``. Refusals abort with the status that fits (``missing``: the 400's words)."""
    from .gallery_admin import UploadRefused

    rid = (request.form.get("result") or "").strip()[:64]
    f = request.files.get("photo")
    if not rid and (f is None or not f.filename):
        abort(400, missing)
    try:
        return search_audited(services(), g.user.username, rid, f)
    except UploadRefused as e:
        abort(e.status, str(e))
    except GalleryError as e:
        abort(409, str(e))
    except EdgefaceError as e:
        abort(422, str(e))


@bp.route("/search", methods=["GET", "POST"])
@access("reviewer", "admin")
def search() -> Any:
    if request.method == "GET":
        return render_template("search.html", outcome=None)
    outcome = search_requested("choose a photo to search with, or give a result id")
    names = _names([c["identity"] for face in outcome.faces for c in face.candidates])
    return render_template("search.html", outcome=outcome, names=names)
