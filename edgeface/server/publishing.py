"""Publishing a gallery version: one signed bundle per embedder the fleet runs, announced once, recorded.

The publish folder (``<data_dir>/publish``, served to units at ``<public_url>/bundles/``)::

    latest.json                      the first embedder's pointer, its paths into that embedder's folder:
                                     what units of releases before per-embedder folders read (unchanged)
    <embedder-id>/latest.json        each embedder's signed pointer (see edgeface/gallery/publish.py)
    <embedder-id>/v0000000013/ ...   its bundles and deltas
    <embedder-id>/deltas/12-13/ ...

A version number is one content, whatever the model: every embedder's bundle of a publication has the
same ``gallery_version`` (an embedder added later starts at the current number), so a unit that changes
its model finds the same identities at the same version, and the fleet page compares versions as before.

A publish folder written before per-embedder folders (bundles at the root) is moved into the folder of
the embedder its bundles name, at the next publication, under the publication lock; units keep
resuming their downloads, since files keep their content (ETags are SHA-256) and pointers are re-signed.
"""

from __future__ import annotations

import hashlib
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from ..errors import EdgefaceError, GalleryError
from ..logs import get_logger
from . import audit
from .embedders import FOLDER_NAME, embed_enrolled, engine_for, fleet_cards
from .tables import publication_bundles, publications

log = get_logger(__name__)


def _prefixed(ptr: Any, folder: str) -> Any:
    from ..gallery.publish import Pointer

    return Pointer(ptr.version, f"{folder}/{ptr.bundle}", {v: f"{folder}/{rel}" for v, rel in ptr.deltas.items()})


def migrate_single_layout(root: Path, signer: Any, ttl_s: float) -> str | None:
    """Move bundles published at the root (one embedder) into ``<root>/<embedder-id>/``; the id, or None
    when there was nothing to move. The caller holds the publication lock."""
    from ..gallery.bundle import MANIFEST
    from ..gallery.manifest import Manifest
    from ..gallery.publish import read_pointer, write_pointer

    ptr = read_pointer(root)
    if ptr is None or "/" in ptr.bundle.rstrip("/"):
        return None
    manifest = Manifest.from_bytes((root / ptr.bundle / MANIFEST).read_bytes(), str(root / ptr.bundle))
    folder = manifest.embedder.id
    if not FOLDER_NAME.match(folder):
        raise GalleryError(f"{root}: the published bundles name embedder {folder!r}, not usable as a folder name")
    dest = root / folder
    dest.mkdir(exist_ok=True)
    moved = []
    for d in sorted(root.glob("v*")):
        if d.is_dir() and d.name[1:].isdigit():
            d.rename(dest / d.name)
            moved.append(d.name)
    if (root / "deltas").is_dir() and not (dest / "deltas").exists():
        (root / "deltas").rename(dest / "deltas")
    write_pointer(dest, ptr, signer, ttl_s)
    write_pointer(root, _prefixed(ptr, folder), signer, ttl_s)
    log.warning("server.gallery.layout_migrated", embedder=folder, versions=moved, into=str(dest))
    return folder


def _next_version(root: Path, folders: list[str]) -> int:
    from ..gallery.publish import read_pointer

    found = [read_pointer(root / f) for f in folders] + [read_pointer(root)]
    return max([p.version for p in found if p is not None] or [0]) + 1


def publish_gallery(svc: Any, actor: str) -> dict[str, Any]:
    """Build, sign and publish the next version for every embedder in ``server.embedders`` from everything
    enrolled (see the module docstring); announce it; record it and audit each embedder's bundle.

    Refused (ConfigError, before anything is built) without ``server.public_url`` or with an unknown
    embedder: the announcement points units to ``<server.public_url>/bundles/`` and never to the Host
    header of a request.
    """
    from ..gallery import signing
    from ..gallery.enroll import Workspace
    from ..gallery.publish import publish_for, publish_lock, read_pointer, write_pointer

    cfg = svc.config
    url = svc.bundles_url()
    cards = fleet_cards(cfg)
    key = signing.load_private_key(Path(cfg.server.signing_key))
    root = svc.publish_dir
    with ExitStack() as locks:
        locks.enter_context(publish_lock(root))
        for card in cards:  # the lock a unit's poll takes to re-sign that folder's pointer (keep_pointer_fresh)
            locks.enter_context(publish_lock(root / card.id))
        with svc.engine_lock:
            ws = Workspace(svc.workspace_dir)
            try:
                _, entries, idents = ws.content()
                if not entries:
                    raise GalleryError("nothing is enrolled: enroll identities first")
                embedded = [
                    embed_enrolled(
                        engine_for(svc, card),
                        ws,
                        svc.images_dir,
                        entries,
                        idents,
                        second_face_ratio=cfg.enroll.second_face_ratio,
                    )
                    for card in cards
                ]
            finally:
                ws.close()
        empty = [e.card.id for e in embedded if not e.entries]
        if empty:
            raise GalleryError(f"no enrolled image could be embedded with {', '.join(empty)}; nothing was published")
        migrate_single_layout(root, key, cfg.gallery.pointer_ttl_s)
        version = _next_version(root, [c.id for c in cards])
        pubs = {}
        for e in embedded:
            pubs[e.card.id] = publish_for(
                root / e.card.id,
                e.card,
                vectors=e.vectors,
                entries=e.entries,
                identities=e.identities,
                signer=key,
                target_fpir=cfg.gallery.target_fpir,
                pointer_ttl_s=cfg.gallery.pointer_ttl_s,
                version=version,
            )
        first = cards[0].id
        folder_ptr = read_pointer(root / first)
        assert folder_ptr is not None
        write_pointer(root, _prefixed(folder_ptr, first), key, cfg.gallery.pointer_ttl_s)
    bundles = [_bundle_record(e, pubs[e.card.id]) for e in embedded]
    return _announce_and_record(svc, actor, url, version, bundles)


def _bundle_record(e: Any, pub: Any) -> dict[str, Any]:
    m = pub.manifest
    return {
        "embedder": e.card.id,
        "embedder_sha256": e.card.sha256,
        "version": m.gallery_version,
        "count": m.count,
        "identities": m.identities,
        "bytes": m.total_bytes,
        "manifest_sha256": hashlib.sha256((pub.dir / "manifest.json").read_bytes()).hexdigest(),
        "deltas": sorted(pub.deltas),
        "embedded": e.embedded,
        "cached": e.cached,
        "refused": len(e.refused),
    }


def _announce_and_record(svc: Any, actor: str, url: str, version: int, bundles: list[dict[str, Any]]) -> dict[str, Any]:
    from ..mqtt import payloads
    from .announce import announce

    first = bundles[0]
    doc = payloads.announce_payload(
        gallery_version=version,
        url=url,
        model_id=first["embedder"],
        manifest_sha256=first["manifest_sha256"],
        count=first["identities"],
    )
    announced, why = announce(svc.config, doc)
    if not announced:
        log.warning(
            "server.gallery.not_announced",
            version=version,
            why=why,
            hint="units still find it at their next scheduled sync",
        )
    rec = {
        "version": version,
        "url": url,
        "count": first["count"],
        "identities": first["identities"],
        "bytes": first["bytes"],
        "manifest_sha256": first["manifest_sha256"],
        "announced": announced,
        "why_not_announced": why,
        "deltas": first["deltas"],
        "embedders": [b["embedder"] for b in bundles],
        "bundles": bundles,
    }
    now = time.time()
    with svc.db.write() as conn:
        conn.execute(
            insert(publications).values(
                version=version,
                published_at=now,
                published_by=actor,
                count=first["count"],
                identities=first["identities"],
                bytes=first["bytes"],
                manifest_sha256=first["manifest_sha256"],
                announced=announced,
            )
        )
        for b in bundles:
            conn.execute(
                insert(publication_bundles).values(
                    version=version,
                    embedder_id=b["embedder"],
                    embedder_sha256=b["embedder_sha256"],
                    count=b["count"],
                    identities=b["identities"],
                    bytes=b["bytes"],
                    manifest_sha256=b["manifest_sha256"],
                    embedded=b["embedded"],
                )
            )
            audit.append(conn, actor, "gallery.publish.embedder", f"v{version}/{b['embedder']}", b)
        audit.append(conn, actor, "gallery.publish", f"v{version}", {k: v for k, v in rec.items() if k != "bundles"})
    return rec


def keep_pointer_fresh(svc: Any, folder: Path | None = None) -> None:
    """Re-sign a ``latest.json`` (the root's, or ``folder``'s: an embedder's) when a unit asks for it past
    half its lifetime (gallery.pointer_ttl_s): the server has no publish loop, so units' polls are its
    clock. A failure is logged and the pointer served as it is (units then refuse it once expired and
    show their gallery as stale)."""
    from ..gallery import signing
    from ..gallery.publish import refresh_pointer_if_due

    cfg = svc.config
    try:
        refresh_pointer_if_due(
            folder or svc.publish_dir,
            cfg.gallery.pointer_ttl_s,
            lambda: signing.load_private_key(Path(cfg.server.signing_key)),
        )
    except (EdgefaceError, OSError) as e:
        log.error(
            "server.gallery.pointer_refresh_failed",
            error=str(e),
            hint="check server.signing_key; units refuse the pointer once it expires",
        )
