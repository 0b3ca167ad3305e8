"""The operator's view: what ``edgeface status`` shows, whether or not the daemon is running.

The daemon writes ``<run.state_dir>/status.json`` every ``status.interval_s`` (atomically: a reader
never sees half a file) with what only it knows: frames/s, faces/s, the link, errors in the last
hour, the stages. ``edgeface status`` reads that file and adds what it can see itself on disk: the
installed gallery and its age, the outbox depth, disk use. A status file whose process is gone or
that stopped being updated is reported as such.
"""

from __future__ import annotations

import calendar
import json
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import EdgefaceError

if TYPE_CHECKING:
    from ..config import Config

STATUS_FILE = "status.json"


def status_path(config: Config) -> Path:
    return Path(config.run.state_dir) / STATUS_FILE


def write_status(path: Path, doc: dict[str, Any]) -> None:
    """Replace the status file atomically (no fsync: it is rewritten every few seconds)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    os.replace(tmp, path)


def read_status(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None  # being replaced right now, or damaged: the next write repairs it


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by another user (the service user)
    return True


def daemon_state(doc: dict[str, Any] | None, now: float | None = None) -> str:
    """'running', 'stopped' (clean exit), 'stale' (process gone or not updating), or 'never run'."""
    if doc is None:
        return "never run"
    if doc.get("state") == "stopped":
        return "stopped"
    now = time.time() if now is None else now
    fresh = now - float(doc.get("updated_at", 0)) <= 3 * float(doc.get("interval_s", 5)) + 10
    return "running" if fresh and pid_alive(int(doc.get("pid", 0))) else "stale"


def _parse_utc(text: str) -> float | None:
    try:
        return float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")))
    except (TypeError, ValueError):
        return None


def gallery_info(config: Config, now: float | None = None) -> dict[str, Any]:
    """The installed gallery's version, size and age, the last sync, and a pending change of embedder
    (``switch``: the model running, the one wanted, whether its gallery is ready), from the files (no key
    needed)."""
    from ..gallery.bundle import MANIFEST
    from ..gallery.manifest import Manifest
    from ..gallery.switch import switch_info

    now = time.time() if now is None else now
    root = Path(config.gallery.dir)
    out: dict[str, Any] = {"dir": str(root), "installed": False, "version": 0}
    link = root / "current"
    if link.is_symlink():
        try:
            m = Manifest.from_bytes((link.resolve() / MANIFEST).read_bytes(), str(link))
        except (OSError, EdgefaceError) as e:
            out["error"] = str(e)
        else:
            created = _parse_utc(m.created)
            out.update(
                installed=True,
                version=m.gallery_version,
                created=m.created,
                count=m.count,
                identities=m.identities,
                embedder=m.embedder.id,
                age_s=None if created is None else round(now - created, 1),
            )
    s: dict[str, Any] = {}
    state = root / "sync-state.json"
    if state.exists():
        try:
            s = json.loads(state.read_text())
        except (OSError, ValueError):
            s = {}
        last = s.get("last_result") or {}
        out["sync"] = {
            "last_check": s.get("last_check"),
            "last_success": s.get("last_success"),
            "last_status": last.get("status"),
            "last_reason": last.get("reason"),
        }
    out["sync_url"] = config.gallery.sync_url
    out.update(freshness(out["installed"], bool(config.gallery.sync_url), s.get("fresh_until"), now))
    switching = switch_info(config)  # reads cards and manifests only; changes nothing
    if switching.get("pending"):  # told to run another model: its gallery is being fetched beside this one
        out["switch"] = switching
    return out


def freshness(installed: bool, syncing: bool, fresh_until: Any, now: float) -> dict[str, Any]:
    """Whether the installed gallery is *stale*: no signed, unexpired pointer has named it as the newest.

    ``fresh_until`` is the expiry of the last verified ``latest.json`` that named the installed version
    (sync-state.json). Stale when that moment has passed, or when none was ever verified (a gallery
    installed before signed pointers, or a server that serves none): fail closed. Not applicable (None)
    without an installed gallery or without ``gallery.sync_url`` (a gallery that is never synced).
    A stale gallery keeps answering; the operator learns the unit may be missing a newer one.
    """
    if not (installed and syncing):
        return {"stale": None, "fresh_until": None}
    if not isinstance(fresh_until, (int, float)):
        return {"stale": True, "fresh_until": None}
    return {
        "stale": now >= float(fresh_until),
        "fresh_until": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(fresh_until))),
    }


def outbox_info(config: Config) -> dict[str, Any]:
    from ..outbox import Outbox

    path = Path(config.outbox.path)
    if not path.exists():
        return {"path": str(path), "pending": 0, "bytes": 0, "oldest_age_s": None, "exists": False}
    with Outbox(path) as box:
        s = box.stats().as_dict()
    return {
        "path": str(path),
        "exists": True,
        "pending": s["pending"],
        "bytes": s["bytes"],
        "matches": s["by_priority"]["match"]["rows"],
        "oldest_age_s": s["oldest_age_s"],
        "quarantined": s["quarantined"],
        "delivered": s["delivered"],
        "dropped_overflow": s["dropped_overflow"],
        "expired": s["expired"],
    }


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except FileNotFoundError:
                pass
    return total


def disk_info(config: Config) -> dict[str, Any]:
    """Free space where the state lives, and what edgeface's own files take."""
    state = Path(config.run.state_dir)
    probe = state
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    outbox = Path(config.outbox.path)
    used = {
        "outbox": sum(_size(p) for p in (outbox, outbox.with_name(outbox.name + "-wal")) if p.exists()),
        "gallery": _size(Path(config.gallery.dir)) if Path(config.gallery.dir).exists() else 0,
        "media": _size(Path(config.retention.dir)) if Path(config.retention.dir).exists() else 0,
        "state": _size(state) if state.exists() else 0,
    }
    return {
        "path": str(probe),
        "free_bytes": usage.free,
        "total_bytes": usage.total,
        "used_percent": round(100 * (usage.total - usage.free) / usage.total, 1) if usage.total else None,
        "edgeface_bytes": used,
    }


def gather(config: Config, now: float | None = None) -> dict[str, Any]:
    """Everything ``edgeface status`` shows: the daemon's file plus fresh figures from disk."""
    now = time.time() if now is None else now
    doc = read_status(status_path(config))
    state = daemon_state(doc, now)
    out: dict[str, Any] = {"daemon": state, "status_file": str(status_path(config))}
    if doc is not None:
        out.update(
            {
                k: doc[k]
                for k in (
                    "pid",
                    "device_id",
                    "version",
                    "started_at",
                    "updated_at",
                    "source",
                    "rates",
                    "counters",
                    "link",
                    "errors",
                    "stages",
                    "retention",
                )
                if k in doc
            }
        )
        if state != "running" and "rates" in out:
            out["rates"] = {**out["rates"], "frames_per_s": 0.0, "faces_per_s": 0.0, "note": "daemon not running"}
    for key, fn in (
        ("gallery", lambda: gallery_info(config, now)),
        ("outbox", lambda: outbox_info(config)),
        ("disk", lambda: disk_info(config)),
    ):
        try:
            out[key] = fn()
        except (OSError, EdgefaceError) as e:  # e.g. run as a user who may not read the service's files
            out[key] = {"error": f"{e}; run as the service user (sudo -u edgeface) or root"}
    return out
