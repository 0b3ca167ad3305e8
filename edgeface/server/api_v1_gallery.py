"""The JSON API, version 1: identities and their images, enrollment, learning from review, publishing.

Same roles as the pages: finding an identity to confirm as is a reviewer's (and an administrator's)
business; an identity's images, enrolling, adding a confirmed probe and publishing change or show what
units match against, and are an administrator's. The functions are the pages' own.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, g, request
from sqlalchemy import select

from ..errors import EdgefaceError
from . import audit
from .access import API, access
from .api_v1 import body, created
from .gallery_admin import UploadRefused, enroll_files
from .publishing import publish_gallery
from .review import send_image
from .services import services
from .tables import identities, images, publication_bundles, publications

bp = Blueprint("api_gallery", __name__, url_prefix="/api/v1")


@bp.route("/identities")
@access(API, "reviewer", "admin")
def identities_list() -> Any:
    """Identities whose id or name contains ``q`` (any case), enrolled and pending new persons, by name."""
    from .review_identity import search_identities

    limit = request.args.get("limit", 20, type=int)
    if not 1 <= limit <= 100:
        abort(400, "limit is 1 to 100")
    with services().db.read() as conn:
        hits = search_identities(conn, request.args.get("q", ""), limit=limit)
    return {"identities": [h.to_dict() for h in hits]}


def _image(r: Any) -> dict[str, Any]:
    return {
        "id": int(r.id),
        "sha256": r.sha256,
        "source": r.source,
        "consent": r.consent,
        "enrolled_by": r.enrolled_by,
        "enrolled_at": r.enrolled_at,
        "status": r.status,
        "reasons": r.reasons,
        "result_id": r.result_id,
    }


@bp.route("/identities/<ident>")
@access(API, "admin")
def identity_one(ident: str) -> Any:
    """One identity with every stored image's provenance (refused uploads included, as the page shows)."""
    with services().db.read() as conn:
        row = conn.execute(select(identities).where(identities.c.id == ident)).first()
        if row is None:
            abort(404, f"no identity {ident!r}")
        imgs = conn.execute(select(images).where(images.c.identity_id == ident).order_by(images.c.id)).all()
    return {
        "id": row.id,
        "name": row.name,
        "status": row.status,
        "created_at": row.created_at,
        "created_by": row.created_by,
        "images": [_image(i) for i in imgs],
    }


@bp.route("/images/<int:image_id>")
@access(API, "admin")
def image_bytes(image_id: int) -> Any:
    """A stored image's bytes; each download is audited (``images.view``), as a gallery page view is."""
    svc = services()
    with svc.db.read() as conn:
        fname = conn.execute(select(images.c.filename).where(images.c.id == image_id)).scalar()
    if fname is None:
        abort(404, f"no image {image_id}")
    with svc.db.write() as conn:
        audit.append(conn, g.user.username, "images.view", f"api/images/{image_id}", {"images": [image_id]})
    return send_image(svc.images_dir / fname)


@bp.route("/identities/<ident>/images", methods=["POST"])
@access(API, "admin")
def enroll(ident: str) -> Any:
    """Enroll images (multipart ``images``, with ``source`` and ``consent``; ``name`` optional) through the
    Gallery page's quality gate; every file is checked before any is stored. 201 with each file's outcome."""
    files = [(f.filename or "", f.read()) for f in request.files.getlist("images") if f and f.filename]
    f = request.form
    try:
        ident, report = enroll_files(
            services(), g.user.username, ident, f.get("name", ""), f.get("source", ""), f.get("consent", ""), files
        )
    except UploadRefused as e:
        abort(e.status, str(e))
    return created({"identity": ident, "report": report})


@bp.route("/publish", methods=["POST"])
@access(API, "admin")
def publish() -> Any:
    """Build, sign, publish and announce the next gallery version from everything enrolled (as the page)."""
    try:
        rec = publish_gallery(services(), g.user.username)
    except EdgefaceError as e:
        abort(409, str(e))
    return created(rec)


@bp.route("/publications")
@access(API, "admin")
def publications_list() -> Any:
    """The 50 newest publications, newest first, each with its per-embedder bundles."""
    with services().db.read() as conn:
        pubs = conn.execute(select(publications).order_by(publications.c.version.desc()).limit(50)).all()
        bundles: dict[int, list[dict[str, Any]]] = {}
        for b in conn.execute(
            select(publication_bundles)
            .where(publication_bundles.c.version.in_([p.version for p in pubs]))
            .order_by(publication_bundles.c.embedder_id)
        ):
            bundles.setdefault(int(b.version), []).append(
                {k: getattr(b, k) for k in ("embedder_id", "embedder_sha256", "count", "identities", "bytes")}
            )
    return {
        "publications": [
            {
                "version": int(p.version),
                "published_at": p.published_at,
                "published_by": p.published_by,
                "count": p.count,
                "identities": p.identities,
                "bytes": p.bytes,
                "manifest_sha256": p.manifest_sha256,
                "announced": bool(p.announced),
                "bundles": bundles.get(int(p.version), []),
            }
            for p in pubs
        ]
    }


@bp.route("/results/<rid>/gallery-image", methods=["POST"])
@access(API, "admin")
def learn(rid: str) -> Any:
    """Add a confirmed result's probe to the confirmed person's gallery images (JSON ``legal_basis``),
    through the enrollment quality gate, with its provenance; the next publication carries it."""
    from .learning import LearnRefused, add_probe_to_gallery

    basis = body().get("legal_basis", "")
    if not isinstance(basis, str):
        abort(400, "legal_basis is a string")
    try:
        learnt = add_probe_to_gallery(services(), rid, g.user.username, basis)
    except LearnRefused as e:
        abort(e.status, str(e))
    return created(learnt.to_dict())
