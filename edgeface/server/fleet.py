"""The fleet view (devices, from their retained status and last will) and device credentials."""

from __future__ import annotations

import json
import time
from typing import Any

from flask import Blueprint, abort, g, redirect, render_template, request, url_for
from sqlalchemy import func, select

from ..errors import ConfigError
from . import audit, auth, rejected
from .access import access
from .services import services
from .tables import devices, publications

bp = Blueprint("fleet", __name__)


def gallery_stale(
    reported_version: int | None,
    last_fetch_at: float | None,
    pointer_expires: float | None,
    published: bool,
    ttl_s: float,
    now: float,
) -> bool | None:
    """Whether a device's gallery is stale: no signed, unexpired pointer from this server can be vouching
    for it. True when this server's own latest.json has expired or is unsigned (units refuse it), or
    when the device last fetched it more than ``gallery.pointer_ttl_s`` ago (whatever it verified then has
    expired since). None when it cannot be told (no gallery reported, nothing published, never fetched
    here: a unit syncing from a mirror)."""
    if reported_version is None or not published:
        return None
    if pointer_expires is None or pointer_expires <= now:
        return True
    if last_fetch_at is None:
        return None
    return now - last_fetch_at > ttl_s


def _pointer_expiry(publish_dir: Any) -> tuple[bool, float | None]:
    from ..errors import GalleryError
    from ..gallery.publish import read_pointer

    try:
        ptr = read_pointer(publish_dir)
    except (GalleryError, OSError):
        return True, None
    return ptr is not None, None if ptr is None else ptr.expires_ts


def device_rows(conn: Any) -> list[dict[str, Any]]:
    latest = conn.execute(select(func.max(publications.c.version))).scalar()
    svc, now = services(), time.time()
    published, pointer_expires = _pointer_expiry(svc.publish_dir)
    out = []
    for d in conn.execute(select(devices).order_by(devices.c.device_id)):
        st = json.loads(d.status) if d.status else {}
        ob = st.get("outbox") or {}
        seen = max([t for t in (d.updated_at, d.last_result_at) if t] or [0]) or None
        out.append(
            {
                "device_id": d.device_id,
                "state": d.state or "unknown",
                "reason": st.get("reason"),
                "last_seen": seen,
                "status_ts": st.get("ts"),
                "pending": ob.get("pending"),
                "matches": ob.get("matches"),
                "oldest_age_s": ob.get("oldest_age_s"),
                "quarantined": ob.get("quarantined"),
                "gallery_version": st.get("gallery_version"),
                "gallery_behind": (
                    latest is not None and st.get("gallery_version") is not None and st["gallery_version"] < latest
                ),
                "gallery_stale": gallery_stale(
                    st.get("gallery_version"),
                    d.last_fetch_at,
                    pointer_expires,
                    published,
                    svc.config.gallery.pointer_ttl_s,
                    now,
                ),
                "software_version": st.get("software_version"),
                "model_id": st.get("model_id"),
                "uptime_s": st.get("uptime_s"),
                "credential": "revoked" if d.revoked else ("yes" if d.token_hash else "none"),
                "last_fetch_at": d.last_fetch_at,
                "last_command": last_command(conn, d.device_id),
            }
        )
    return out


def latest_version(conn: Any) -> int | None:
    """The newest published gallery version (None before the first publication)."""
    v = conn.execute(select(func.max(publications.c.version))).scalar()
    return None if v is None else int(v)


def issue_credential(svc: Any, actor: str, device_id: str) -> str:
    """A new bundle-download token for ``device_id`` (replacing an earlier one), audited; shown once.
    Raises ConfigError for a device id that is not valid."""
    with svc.db.write() as conn:
        token = auth.issue_device_token(conn, device_id)
        audit.append(conn, actor, "device.credential", device_id, {"issued_at": time.time()})
    return token


def last_command(conn: Any, device_id: str) -> str | None:
    """'lock #3: applied' for the unit's newest signed command, or None."""
    from .commands import history

    rows = history(conn, device_id, limit=1)
    if not rows:
        return None
    r = rows[0]
    return f"{r['command']} #{r['seq']}: {r['state']}" + (f" ({r['reason']})" if r["reason"] else "")


@bp.route("/fleet")
@access("reviewer", "admin")
def index() -> Any:
    with services().db.read() as conn:
        rows = device_rows(conn)
        latest = conn.execute(select(func.max(publications.c.version))).scalar()
        bad = rejected.summary(conn)
    return render_template("fleet.html", rows=rows, latest=latest, token=None, token_device=None, rejected=bad)


@bp.route("/fleet/devices", methods=["POST"])
@access("admin")
def issue() -> Any:
    device_id = (request.form.get("device_id") or "").strip()
    svc = services()
    try:
        token = issue_credential(svc, g.user.username, device_id)
    except ConfigError as e:
        abort(400, str(e))
    with svc.db.read() as conn:
        rows = device_rows(conn)
        latest = conn.execute(select(func.max(publications.c.version))).scalar()
        bad = rejected.summary(conn)
    return render_template("fleet.html", rows=rows, latest=latest, token=token, token_device=device_id, rejected=bad)


@bp.route("/fleet/devices/<device_id>/revoke", methods=["POST"])
@access("admin")
def revoke(device_id: str) -> Any:
    """Gallery downloads refused, a signed 'revoke' sent, the unit's broker account disabled (all audited)."""
    from . import commands

    svc = services()
    try:
        commands.revoke(svc.config, svc.db, device_id, g.user.username)
    except ConfigError as e:
        abort(400, str(e))
    return redirect(url_for("fleet.index"))


@bp.route("/fleet/devices/<device_id>/command", methods=["POST"])
@access("admin")
def command(device_id: str) -> Any:
    """Send a signed 'lock', 'unlock' or 'wipe' (a wipe only with the device id typed again)."""
    from . import commands

    name = request.form.get("command", "")
    if name not in ("lock", "unlock", "wipe"):
        abort(400, "command must be lock, unlock or wipe (revoke has its own button)")
    if name == "wipe" and request.form.get("confirm", "").strip() != device_id:
        abort(400, f"a wipe destroys everything personal on {device_id}: type its device id to confirm")
    svc = services()
    with svc.db.read() as conn:
        if conn.execute(select(devices.c.device_id).where(devices.c.device_id == device_id)).first() is None:
            abort(404, f"no device {device_id!r} has reported or been registered")
    try:
        commands.command(svc.config, svc.db, device_id, name, g.user.username)
    except ConfigError as e:
        abort(400, str(e))
    return redirect(url_for("fleet.index"))
