"""Gallery management: enroll identities from uploads (with provenance), build + sign + publish a
version with the gallery code, announce it, show the history and the version each device runs; and
the devices' authenticated bundle download (the gallery's own WSGI file server, mounted as it is).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, abort, g, redirect, render_template, request, url_for
from sqlalchemy import delete, func, insert, select, update

from ..errors import EdgefaceError, ImageError, ImageTooLarge
from ..logs import get_logger
from ..vision.settings import ImageConfig
from . import audit, auth
from .access import DEVICE, access
from .publishing import keep_pointer_fresh, publish_gallery
from .review import send_image
from .services import services
from .tables import devices, identities, images, publication_bundles, publications

log = get_logger(__name__)
bp = Blueprint("gallery_admin", __name__)

IDENTITY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
GALLERY_SCOPE = "gallery"  # view-token scope of the images the gallery pages show
FORMATS = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp"}  # MPO: phones' JPEG


@dataclass(frozen=True)
class Upload:
    """One uploaded image, checked from its header (nothing decoded, nothing on disk yet)."""

    original: str  # the browser's file name
    data: bytes
    sha256: str
    filename: str  # <sha256>.<ext> under <data_dir>/images/


class UploadRefused(EdgefaceError):
    """An upload is refused as a whole; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def inspect_upload(original: str, data: bytes, limits: ImageConfig) -> Upload:
    """Check an uploaded file from its header only: an accepted format, within ``image.max_bytes`` and
    ``image.max_pixels`` (a decompression bomb is refused before a single pixel is decoded)."""
    from PIL import Image, UnidentifiedImageError

    if len(data) > limits.max_bytes:
        raise ImageTooLarge(f"{original}: {len(data)} bytes, above image.max_bytes = {limits.max_bytes}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides below
            Image.init()
            with Image.open(io.BytesIO(data), formats=[f for f in FORMATS if f in Image.OPEN]) as im:
                fmt, (width, height) = im.format or "", im.size
    except Image.DecompressionBombError as e:  # Pillow's own limit (Image.MAX_IMAGE_PIXELS) is twice exceeded
        raise ImageTooLarge(
            f"{original}: far above image.max_pixels = {limits.max_pixels} ({e}); refused before decoding"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{original}: not an image in an accepted format (JPEG, PNG, WebP or BMP): {e}") from None
    if width * height > limits.max_pixels:
        raise ImageTooLarge(
            f"{original}: {width}x{height} = {width * height} pixels, above image.max_pixels = "
            f"{limits.max_pixels}; refused before decoding"
        )
    if width <= 0 or height <= 0:
        raise ImageError(f"{original}: image has no pixels ({width}x{height})")
    sha = hashlib.sha256(data).hexdigest()
    return Upload(original, data, sha, sha + FORMATS[fmt])


def inspect_uploads(files: list[tuple[str, bytes]], limits: ImageConfig) -> list[Upload]:
    """Every file checked before any is stored: one bad file refuses the whole upload (413 when a file
    is too large, else 422), with every file's problem in the message."""
    uploads, problems, too_large = [], [], False
    for original, data in files:
        try:
            uploads.append(inspect_upload(original, data, limits))
        except ImageError as e:
            problems.append(str(e))
            too_large = too_large or isinstance(e, ImageTooLarge)
    if problems:
        raise UploadRefused(
            "Nothing was stored or enrolled: "
            + "; ".join(problems)
            + ". Remove or replace these files and upload again.",
            413 if too_large else 422,
        )
    return uploads


def store_uploads(images_dir: Path, uploads: list[Upload]) -> list[Path]:
    """Keep each upload under its SHA-256; returns the files this call created (to undo on failure).
    A file already there (the same image enrolled before) is left as it is and not returned."""
    images_dir.mkdir(parents=True, exist_ok=True)
    created: list[Path] = []
    try:
        for u in uploads:
            path = images_dir / u.filename
            if path.exists():
                continue
            tmp = path.with_name(f".{u.filename}.{os.getpid()}.part")
            tmp.write_bytes(u.data)
            tmp.replace(path)
            created.append(path)
    except OSError:
        discard_created(images_dir, created, referenced=set())
        raise
    return created


def discard_created(images_dir: Path, created: list[Path], referenced: set[str]) -> None:
    """Undo :func:`store_uploads`: remove the files it created unless a database row now refers to them
    (the same image uploaded by someone else at the same moment)."""
    for path in created:
        if path.name not in referenced:
            path.unlink(missing_ok=True)
    for stray in images_dir.glob(f".*.{os.getpid()}.part"):
        stray.unlink(missing_ok=True)


@bp.route("/gallery")
@access("admin")
def index() -> Any:
    svc = services()
    with svc.db.read() as conn:
        idents = conn.execute(
            select(identities, func.count(images.c.id).label("n"))
            .outerjoin(
                images, (images.c.identity_id == identities.c.id) & images.c.status.in_(("enrolled", "unchanged"))
            )
            .group_by(*identities.c)
            .order_by(identities.c.id)
        ).all()
        thumbs: dict[str, int] = dict(
            conn.execute(
                select(images.c.identity_id, func.min(images.c.id))
                .where(images.c.status.in_(("enrolled", "unchanged")))
                .group_by(images.c.identity_id)
            ).all()
        )
        pubs = conn.execute(select(publications).order_by(publications.c.version.desc()).limit(50)).all()
        bundles: dict[int, list[Any]] = {}
        for b in conn.execute(
            select(publication_bundles)
            .where(publication_bundles.c.version.in_([p.version for p in pubs]))
            .order_by(publication_bundles.c.embedder_id)
        ):
            bundles.setdefault(int(b.version), []).append(b)
        devs = conn.execute(
            select(devices.c.device_id, devices.c.status, devices.c.state).order_by(devices.c.device_id)
        ).all()
    running = [
        (d.device_id, st.get("gallery_version"), d.state, st.get("model_id"))
        for d in devs
        for st in [json.loads(d.status) if d.status else {}]
    ]
    tokens = _shown("gallery", sorted(thumbs.values()))
    return render_template(
        "gallery.html",
        idents=idents,
        thumbs=thumbs,
        tokens=tokens,
        pubs=pubs,
        running=running,
        latest=pubs[0].version if pubs else None,
        report=None,
        bundles=bundles,
        fleet=_fleet_embedders(svc.config),
    )


def _fleet_embedders(config: Any) -> dict[str, Any]:
    """The embedders the next publication builds for (server.embedders), or why the setting is wrong."""
    from .embedders import fleet_cards, known_embedders

    try:
        return {"ids": [c.id for c in fleet_cards(config)], "error": None}
    except EdgefaceError as e:
        return {"ids": [], "error": str(e), "known": known_embedders(config)}


@bp.route("/gallery/enroll", methods=["POST"])
@access("admin")
def enroll_view() -> Any:
    files = [(f.filename or "", f.read()) for f in request.files.getlist("images") if f and f.filename]
    try:
        ident, report = enroll_files(
            services(),
            g.user.username,
            request.form.get("identity") or "",
            request.form.get("name") or "",
            request.form.get("source") or "",
            request.form.get("consent") or "",
            files,
        )
    except UploadRefused as e:
        abort(e.status, str(e))
    return render_template("enroll_report.html", ident=ident, report=report), 200


def enroll_files(
    svc: Any, actor: str, ident: str, name: str, source: str, consent: str, files: list[tuple[str, bytes]]
) -> tuple[str, list[dict[str, Any]]]:
    """Enroll uploaded files (name, bytes) for ``ident``, as the Gallery page and the API do: the form
    checked, every file checked before any is stored, stored under its SHA-256, enrolled with provenance
    (audited); the stored files removed again when enrolling fails. Returns the identity id and the
    report rows; raises UploadRefused (400 for the form, 413/422 for the files)."""
    ident, name = ident.strip(), name.strip()[:200] or ident.strip()
    source, consent = source.strip()[:500], consent.strip()[:500]
    problems = []
    if not IDENTITY_ID.match(ident):
        problems.append("identity id: 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit")
    if not source:
        problems.append("source: say where the images come from")
    if not consent:
        problems.append("consent or legal basis: required for every enrolled image")
    if not files:
        problems.append("choose at least one image")
    if problems:
        raise UploadRefused("; ".join(problems), 400)
    try:
        uploads = inspect_uploads(files, svc.config.image)
    except UploadRefused as e:
        log.warning("server.enroll_refused", identity=ident, status=e.status, why=str(e))
        raise
    created = store_uploads(svc.images_dir, uploads)
    try:
        report = enroll_stored(svc, ident, name, source, consent, uploads, actor=actor)
    except BaseException:
        with svc.db.read() as conn:
            referenced = {
                r[0]
                for r in conn.execute(select(images.c.filename).where(images.c.filename.in_([p.name for p in created])))
            }
        discard_created(svc.images_dir, created, referenced)
        log.error("server.enroll_failed", identity=ident, removed=len(created) - len(referenced))
        raise
    log.info(
        "server.enrolled",
        identity=ident,
        images=len(report),
        enrolled=sum(r["status"] in ("enrolled", "unchanged") for r in report),
    )
    return ident, report


def enroll_stored(
    svc: Any,
    ident: str,
    name: str,
    source: str,
    consent: str,
    uploads: list[Upload],
    *,
    actor: str | None = None,
    result_id: str | None = None,
) -> list[dict[str, Any]]:
    """Enroll stored uploads into the workspace and record each image (with its audit entry) in one
    database transaction; returns the report rows. ``actor`` defaults to the logged-in user; ``result_id``
    names the confirmed result a probe came from (learning from review, see learning.py). An identity
    with an accepted image is 'enrolled' (a 'pending' new person from review stops being pending)."""
    from ..gallery.enroll import EnrollItem, Workspace, enroll

    by = actor or g.user.username
    items = [EnrollItem(ident, svc.images_dir / u.filename, consent, source, by, name) for u in uploads]
    with svc.engine_lock:
        engine = svc.engine()
        ws = Workspace(svc.workspace_dir)
        try:
            enroll_report = enroll(
                engine,
                ws,
                items,
                duplicate_similarity=svc.config.enroll.duplicate_similarity,
                second_face_ratio=svc.config.enroll.second_face_ratio,
            )
        finally:
            ws.close()
    now = time.time()
    report: list[dict[str, Any]] = []
    with svc.db.write() as conn:
        if conn.execute(select(identities.c.id).where(identities.c.id == ident)).first() is None:
            conn.execute(insert(identities).values(id=ident, name=name, created_at=now, created_by=by))
        else:
            conn.execute(update(identities).where(identities.c.id == ident).values(name=name))
        for u, res in zip(uploads, enroll_report.results, strict=True):
            conn.execute(
                insert(images).values(
                    identity_id=ident,
                    sha256=u.sha256,
                    filename=u.filename,
                    source=source,
                    consent=consent,
                    enrolled_by=by,
                    enrolled_at=now,
                    status=res.status,
                    reasons="; ".join(res.reasons),
                    result_id=result_id,
                )
            )
            report.append(
                {
                    "file": u.original,
                    "sha256": u.sha256,
                    "status": res.status,
                    "reasons": res.reasons,
                    "duplicates": res.duplicates[:3],
                }
            )
            audit.append(
                conn,
                by,
                "enroll.image",
                ident,
                {
                    "sha256": u.sha256,
                    "source": source,
                    "consent": consent,
                    "name": name,
                    "status": res.status,
                    "reasons": res.reasons,
                    **({"result_id": result_id} if result_id else {}),
                },
            )
        if any(r["status"] in ("enrolled", "unchanged") for r in report):
            conn.execute(update(identities).where(identities.c.id == ident).values(status="enrolled"))
    return report


@bp.route("/gallery/identities/<ident>")
@access("admin")
def identity(ident: str) -> Any:
    with services().db.read() as conn:
        row = conn.execute(select(identities).where(identities.c.id == ident)).first()
        if row is None:
            abort(404)
        imgs = conn.execute(select(images).where(images.c.identity_id == ident).order_by(images.c.id)).all()
    tokens = _shown(f"gallery/identities/{ident}", [int(i.id) for i in imgs])
    return render_template("identity.html", ident=row, imgs=imgs, tokens=tokens)


@bp.route("/gallery/identities/<ident>/wipe", methods=["POST"])
@access("admin")
def wipe(ident: str) -> Any:
    """Remove an identity: its workspace entries, its images (unless another identity uses the file)."""
    from ..gallery.enroll import Workspace

    svc = services()
    reason = (request.form.get("reason") or "").strip()[:500]
    if not reason:
        abort(400, "say why the identity is removed (reason)")
    with svc.db.write() as conn:
        if conn.execute(select(identities.c.id).where(identities.c.id == ident)).first() is None:
            abort(404)
        files = [r.filename for r in conn.execute(select(images.c.filename).where(images.c.identity_id == ident))]
        with svc.engine_lock:
            ws = Workspace(svc.workspace_dir)
            try:
                n = ws.remove_identity(ident)
            finally:
                ws.close()
        conn.execute(delete(images).where(images.c.identity_id == ident))
        conn.execute(delete(identities).where(identities.c.id == ident))
        still = {r.filename for r in conn.execute(select(images.c.filename).where(images.c.filename.in_(files)))}
        for fname in set(files) - still:
            (svc.images_dir / fname).unlink(missing_ok=True)
        audit.append(
            conn,
            g.user.username,
            "identity.wipe",
            ident,
            {"reason": reason, "images": len(files), "workspace_entries": n},
        )
    return redirect(url_for("gallery_admin.index"))


@bp.route("/gallery/images/<int:image_id>")
@access("admin")
def image(image_id: int) -> Any:
    """Any stored image, refused uploads included (administrators), as a gallery page showed it."""
    svc = services()
    with svc.db.read() as conn:
        fname = conn.execute(select(images.c.filename).where(images.c.id == image_id)).scalar()
    if fname is None:
        abort(404)
    if not auth.view_token_ok(g.session.csrf_token, GALLERY_SCOPE, image_id, request.args.get("t")):
        abort(403, "Open images from the gallery page that shows them.")
    return send_image(svc.images_dir / fname)


def _shown(page: str, image_ids: list[int]) -> dict[int, str]:
    """Audit one view of a gallery page showing these images; returns each image's URL token."""
    if image_ids:
        with services().db.write() as conn:
            audit.append(conn, g.user.username, "images.view", page, {"images": image_ids})
    return {i: auth.view_token(g.session.csrf_token, GALLERY_SCOPE, i) for i in image_ids}


@bp.route("/gallery/publish", methods=["POST"])
@access("admin")
def publish_view() -> Any:
    try:
        rec = publish_gallery(services(), g.user.username)
    except EdgefaceError as e:
        abort(409, str(e))
    return render_template("published.html", rec=rec)


@bp.route("/bundles/<path:path>", methods=["GET"])
@access(DEVICE)
def bundle_file(path: str) -> Any:
    """A device downloads a published file: ETag, 304 and byte ranges from the gallery's WSGI server."""
    from ..gallery.serve import GalleryFiles

    svc = services()
    files = svc.__dict__.setdefault("_gallery_files", GalleryFiles(svc.publish_dir))
    env = dict(request.environ)
    env["PATH_INFO"] = "/" + path
    if path.rpartition("/")[2] == "latest.json":  # the root's, or an embedder's (<embedder-id>/latest.json)
        folder = files.resolve(path)
        keep_pointer_fresh(svc, folder.parent if folder is not None else None)
        with svc.db.write() as conn:
            conn.execute(update(devices).where(devices.c.device_id == g.device).values(last_fetch_at=time.time()))
    return Response.from_app(files, env)
