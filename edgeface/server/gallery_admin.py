"""Gallery management: enroll identities from uploads (with provenance), build + sign + publish a
version with the gallery code, announce it, show the history and the version each device runs; and
the devices' authenticated bundle download (the gallery's own WSGI file server, mounted as it is).
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, abort, g, redirect, render_template, request, send_file, url_for
from sqlalchemy import delete, func, insert, select, update

from ..errors import EdgefaceError, GalleryError, ImageError
from ..logs import get_logger
from . import audit
from .access import DEVICE, access
from .tables import devices, identities, images, publications

log = get_logger(__name__)
bp = Blueprint("gallery_admin", __name__)

IDENTITY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
FORMATS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp"}


def _svc() -> Any:
    from .app import services

    return services()


@contextmanager
def _publish_lock(folder: Path) -> Iterator[None]:
    """One publication at a time on this host (versions must not race for the same number)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".publish.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def store_upload(images_dir: Path, data: bytes) -> tuple[str, str]:
    """Keep an uploaded image under its SHA-256; returns (sha256, file name). Refuses non-images."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = im.format or ""
    except (UnidentifiedImageError, OSError) as e:
        raise ImageError(f"not an image ({e})") from None
    if fmt not in FORMATS:
        raise ImageError(f"{fmt or 'unknown'} images are not accepted; upload JPEG, PNG, WebP or BMP")
    sha = hashlib.sha256(data).hexdigest()
    name = sha + FORMATS[fmt]
    images_dir.mkdir(parents=True, exist_ok=True)
    path = images_dir / name
    if not path.exists():
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(path)
    return sha, name


@bp.route("/gallery")
@access("admin")
def index() -> Any:
    svc = _svc()
    with svc.db.read() as conn:
        idents = conn.execute(select(identities, func.count(images.c.id).label("n"))
                              .outerjoin(images, (images.c.identity_id == identities.c.id)
                                         & images.c.status.in_(("enrolled", "unchanged")))
                              .group_by(*identities.c).order_by(identities.c.id)).all()
        thumbs: dict[str, int] = dict(conn.execute(select(images.c.identity_id, func.min(images.c.id))
                                                   .where(images.c.status.in_(("enrolled", "unchanged")))
                                                   .group_by(images.c.identity_id)).all())
        pubs = conn.execute(select(publications).order_by(publications.c.version.desc()).limit(50)).all()
        devs = conn.execute(select(devices.c.device_id, devices.c.status, devices.c.state)
                            .order_by(devices.c.device_id)).all()
    running = [(d.device_id, (json.loads(d.status).get("gallery_version") if d.status else None), d.state)
               for d in devs]
    return render_template("gallery.html", idents=idents, thumbs=thumbs, pubs=pubs, running=running,
                           latest=pubs[0].version if pubs else None, report=None)


@bp.route("/gallery/enroll", methods=["POST"])
@access("admin")
def enroll_view() -> Any:
    from ..gallery.enroll import EnrollItem, Workspace, enroll

    svc = _svc()
    ident = (request.form.get("identity") or "").strip()
    name = (request.form.get("name") or "").strip()[:200] or ident
    source = (request.form.get("source") or "").strip()[:500]
    consent = (request.form.get("consent") or "").strip()[:500]
    files = [f for f in request.files.getlist("images") if f and f.filename]
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
        abort(400, "; ".join(problems))
    stored: list[tuple[str, str, str]] = []  # (original name, sha, file name)
    report: list[dict[str, Any]] = []
    for f in files:
        try:
            sha, fname = store_upload(svc.images_dir, f.read())
            stored.append((f.filename or "", sha, fname))
        except ImageError as e:
            report.append({"file": f.filename, "status": "error", "reasons": [str(e)]})
    items = [EnrollItem(ident, svc.images_dir / fname, consent, source, g.user.username, name)
             for _, _, fname in stored]
    enroll_report = None
    if items:
        with svc.engine_lock:
            engine = svc.engine()
            ws = Workspace(svc.workspace_dir)
            try:
                enroll_report = enroll(engine, ws, items, duplicate_similarity=svc.config.enroll.duplicate_similarity,
                                       second_face_ratio=svc.config.enroll.second_face_ratio)
            finally:
                ws.close()
    now = time.time()
    with svc.db.write() as conn:
        if conn.execute(select(identities.c.id).where(identities.c.id == ident)).first() is None:
            conn.execute(insert(identities).values(id=ident, name=name, created_at=now, created_by=g.user.username))
        else:
            conn.execute(update(identities).where(identities.c.id == ident).values(name=name))
        for (orig, sha, fname), res in zip(stored, enroll_report.results if enroll_report else []):
            conn.execute(insert(images).values(identity_id=ident, sha256=sha, filename=fname, source=source,
                                               consent=consent, enrolled_by=g.user.username, enrolled_at=now,
                                               status=res.status, reasons="; ".join(res.reasons)))
            entry = {"file": orig, "sha256": sha, "status": res.status, "reasons": res.reasons,
                     "duplicates": res.duplicates[:3]}
            report.append(entry)
            audit.append(conn, g.user.username, "enroll.image", ident,
                         {"sha256": sha, "source": source, "consent": consent, "name": name, "status": res.status,
                          "reasons": res.reasons})
    log.info("server.enrolled", identity=ident, images=len(report),
             enrolled=sum(r["status"] in ("enrolled", "unchanged") for r in report))
    return render_template("enroll_report.html", ident=ident, report=report), 200


@bp.route("/gallery/identities/<ident>")
@access("admin")
def identity(ident: str) -> Any:
    with _svc().db.read() as conn:
        row = conn.execute(select(identities).where(identities.c.id == ident)).first()
        if row is None:
            abort(404)
        imgs = conn.execute(select(images).where(images.c.identity_id == ident).order_by(images.c.id)).all()
    return render_template("identity.html", ident=row, imgs=imgs)


@bp.route("/gallery/identities/<ident>/wipe", methods=["POST"])
@access("admin")
def wipe(ident: str) -> Any:
    """Remove an identity: its workspace entries, its images (unless another identity uses the file)."""
    from ..gallery.enroll import Workspace

    svc = _svc()
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
        audit.append(conn, g.user.username, "identity.wipe", ident,
                     {"reason": reason, "images": len(files), "workspace_entries": n})
    return redirect(url_for("gallery_admin.index"))


@bp.route("/gallery/images/<int:image_id>")
@access("reviewer", "admin")
def image(image_id: int) -> Any:
    svc = _svc()
    with svc.db.read() as conn:
        fname = conn.execute(select(images.c.filename).where(images.c.id == image_id)).scalar()
    if fname is None or not (svc.images_dir / fname).is_file():
        abort(404)
    resp = send_file(svc.images_dir / fname, max_age=0)
    resp.headers["Cache-Control"] = "private, no-store"
    return resp


def publish_gallery(svc: Any, actor: str) -> dict[str, Any]:
    """Build, sign and publish the next version from everything enrolled; announce it; record it.

    Refused (ConfigError, before anything is built) without ``server.public_url``: the announcement
    points units to ``<server.public_url>/bundles/`` and never to the Host header of a request.
    """
    from ..gallery import signing
    from ..gallery.enroll import Workspace, settings_key
    from ..gallery.publish import publish_for
    from ..mqtt import payloads
    from .announce import announce

    cfg = svc.config
    url = svc.bundles_url()
    key = signing.load_private_key(Path(cfg.server.signing_key))
    with _publish_lock(svc.publish_dir), svc.engine_lock:
        engine = svc.engine()
        card = engine.embedder_card
        ws = Workspace(svc.workspace_dir)
        try:
            vectors, entries, idents = ws.content(settings_key(engine, cfg.enroll.second_face_ratio))
        finally:
            ws.close()
        if not entries:
            raise GalleryError("nothing is enrolled with this embedder and these settings: enroll identities first")
        pub = publish_for(svc.publish_dir, card, vectors=vectors, entries=entries, identities=idents,
                          signer=key, target_fpir=cfg.gallery.target_fpir)
    m = pub.manifest
    manifest_sha = hashlib.sha256((pub.dir / "manifest.json").read_bytes()).hexdigest()
    doc = payloads.announce_payload(gallery_version=m.gallery_version, url=url, model_id=card.id,
                                    manifest_sha256=manifest_sha, count=m.identities)
    announced, why = announce(cfg, doc)
    if not announced:
        log.warning("server.gallery.not_announced", version=m.gallery_version, why=why,
                    hint="units still find it at their next scheduled sync")
    rec = {"version": m.gallery_version, "url": url, "count": m.count, "identities": m.identities, "bytes": m.total_bytes,
           "manifest_sha256": manifest_sha, "announced": announced, "why_not_announced": why,
           "deltas": sorted(pub.deltas)}
    with svc.db.write() as conn:
        conn.execute(insert(publications).values(version=m.gallery_version, published_at=time.time(),
                                                 published_by=actor, count=m.count, identities=m.identities,
                                                 bytes=m.total_bytes, manifest_sha256=manifest_sha,
                                                 announced=announced))
        audit.append(conn, actor, "gallery.publish", f"v{m.gallery_version}", rec)
    return rec


@bp.route("/gallery/publish", methods=["POST"])
@access("admin")
def publish_view() -> Any:
    try:
        rec = publish_gallery(_svc(), g.user.username)
    except EdgefaceError as e:
        abort(409, str(e))
    return render_template("published.html", rec=rec)


@bp.route("/bundles/<path:path>", methods=["GET"])
@access(DEVICE)
def bundle_file(path: str) -> Any:
    """A device downloads a published file: ETag, 304 and byte ranges from the gallery's WSGI server."""
    from ..gallery.serve import GalleryFiles

    svc = _svc()
    files = svc.__dict__.setdefault("_gallery_files", GalleryFiles(svc.publish_dir))
    env = dict(request.environ)
    env["PATH_INFO"] = "/" + path
    if path == "latest.json":
        with svc.db.write() as conn:
            conn.execute(update(devices).where(devices.c.device_id == g.device).values(last_fetch_at=time.time()))
    return Response.from_app(files, env)
