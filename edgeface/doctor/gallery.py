"""The installed gallery: verified as the daemon opens it (signature by a trusted key, every file's
SHA-256 after decryption, the embedder), its version and age, and whether a signed, unexpired pointer
from the server has confirmed it is the latest (else it is *stale*: it still answers, but the unit may
be missing a newer one; docs/gallery.md)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import EdgefaceError
from .report import Check

if TYPE_CHECKING:
    from ..config import Config


def _age(s: float | None) -> str:
    if s is None:
        return "of unknown age"
    if s < 2 * 3600:
        return f"built {max(0.0, s) / 60:.0f} min ago"
    if s < 2 * 86400:
        return f"built {s / 3600:.1f} h ago"
    return f"built {s / 86400:.1f} d ago"


def gallery_check(config: Config) -> Check:
    from ..daemon.status import gallery_info

    root = Path(config.gallery.dir)
    try:
        info = gallery_info(config)
    except (OSError, EdgefaceError) as e:
        return Check(
            "gallery", "fail", f"cannot read {root}: {e}", "run as the service user (sudo -u edgeface) or root"
        )
    if not (root / "current").is_symlink():
        return Check(
            "gallery",
            "fail",
            f"no gallery installed in {root}: faces are compared with nobody",
            "sync one (edgeface gallery sync; gallery.sync_url) or check gallery.dir",
            info,
        )
    switch = info.get("switch") or {}
    if switch.get("running"):  # mid-way through a change of embedder: the installed gallery is the old model's
        config = dataclasses.replace(config, models=dataclasses.replace(config.models, embedder=switch["running"]))
    try:
        gallery = _open_verified(config)
    except (OSError, EdgefaceError) as e:
        reason = getattr(e, "reason", "")
        return Check(
            "gallery",
            "fail",
            f"the installed gallery in {root} is refused" + (f" ({reason})" if reason else "") + f": {e}",
            "sync a fresh one from the server (edgeface gallery sync); check gallery.trusted_keys and the device key",
            {**info, "reason": reason},
        )
    try:
        detail: dict[str, Any] = {**info, "key_id": gallery.key_id, "verified": True}
        m = gallery.manifest
        summary = (
            f"version {m.gallery_version}, {_age(info.get('age_s'))} ({m.created}), {m.count} images of "
            f"{m.identities} people, embedder {m.embedder.id}; signature and files verified (key {gallery.key_id})"
        )
    finally:
        gallery.close()
    if switch:
        summary += f"; embedder switch to {switch.get('desired')} pending"
    if info.get("stale"):
        sync = info.get("sync") or {}
        why = (
            f"no signed pointer newer than {info['fresh_until']} confirmed it is the latest"
            if info.get("fresh_until")
            else "no signed, unexpired pointer has confirmed it is the latest"
        )
        last = f" (last sync: {sync.get('last_status')}, {sync.get('last_reason')})" if sync.get("last_status") else ""
        return Check(
            "gallery",
            "warn",
            f"STALE: {summary}; {why}{last}",
            "check the link to gallery.sync_url and that the server re-signs latest.json (edgeface gallery refresh)",
            detail,
        )
    if info.get("stale") is None:
        summary += "; never synced (gallery.sync_url empty)" if not config.gallery.sync_url else ""
    else:
        summary += f"; confirmed latest until {info['fresh_until']}"
    return Check("gallery", "ok", summary, detail=detail)


def _open_verified(config: Config) -> Any:
    """The installed gallery opened as ``edgeface run`` opens it (raises what the daemon would log)."""
    from ..daemon.gallery_holder import GalleryHolder

    gallery = GalleryHolder(config).open_store().open()
    if gallery is None:
        raise EdgefaceError(f"{config.gallery.dir}/current points at no installed version")
    return gallery
