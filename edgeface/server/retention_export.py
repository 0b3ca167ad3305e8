"""The export a purge writes before it deletes anything: one folder per run, what goes, as it was stored.

``<export_dir>/purge-<UTC time>/`` (mode 0700, files 0600, each fsynced, then the folder):

- ``results.jsonl``: one line per deleted result: its row, the payload as the unit sent it (with its crop
  if it still had one) and its review records with the reviewers' user names;
- ``crops.jsonl``: one line per result whose face crop alone is removed: the id and the crop;
- ``manifest.json``: the policy, the cut-off times, the counts and each file's SHA-256 and size.

The folder is complete on disk before the deletion's transaction commits; the audit log's
``retention.purge`` entry names it and the manifest's SHA-256. A folder with no such entry lists what a
run meant to delete but did not (it failed or was interrupted): nothing in it was deleted.
The export holds the personal data the purge removes from the database: move it to where the
organisation keeps such records, or destroy it, as its rules say.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import EdgefaceError

FORMAT = "edgeface-purge/1"


@dataclass(frozen=True)
class Export:
    """A written export folder: where, and the manifest's SHA-256 (recorded in the audit entry)."""

    path: Path
    manifest_sha256: str
    files: dict[str, dict[str, Any]]


def line(record: Mapping[str, Any], raw: Mapping[str, str] | None = None) -> bytes:
    """One JSON line: ``record``, plus ``raw``'s values inserted as the JSON text they already are (a
    stored payload is written as stored, not decoded and encoded again)."""
    text = json.dumps(record, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    extra = "".join(f",{json.dumps(k)}:{v}" for k, v in (raw or {}).items())
    if extra:
        text = (text[:-1] + extra + "}") if len(text) > 2 else ("{" + extra[1:] + "}")
    return (text + "\n").encode()


def _new_folder(root: Path, at: float) -> Path:
    try:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        raise EdgefaceError(
            f"cannot create the purge export folder {root} ({e.strerror}); give --export a writable folder "
            "or set server.retention.export_dir"
        ) from None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(at))
    for n in range(1000):
        path = root / (f"purge-{stamp}" + (f"-{n}" if n else ""))
        try:
            path.mkdir(mode=0o700)
            return path
        except FileExistsError:
            continue
        except OSError as e:
            raise EdgefaceError(f"cannot create the purge export folder {path} ({e.strerror})") from None
    raise EdgefaceError(f"{root} already holds 1000 purge exports made at {stamp}; remove some")


def _write(path: Path, lines: Iterable[bytes]) -> dict[str, Any]:
    digest, size = hashlib.sha256(), 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        for chunk in lines:
            f.write(chunk)
            digest.update(chunk)
            size += len(chunk)
        f.flush()
        os.fsync(f.fileno())
    return {"sha256": digest.hexdigest(), "bytes": size}


def write_export(
    root: Path,
    *,
    at: float,
    results: Iterable[bytes],
    crops: Iterable[bytes],
    summary: Mapping[str, Any],
) -> Export:
    """Write one run's export under ``root`` (``results`` and ``crops``: JSON lines, see :func:`line`) and
    make it durable; returns where it is."""
    folder = _new_folder(root, at)
    try:
        files = {
            "results.jsonl": _write(folder / "results.jsonl", results),
            "crops.jsonl": _write(folder / "crops.jsonl", crops),
        }
        manifest = {
            "format": FORMAT,
            "created_at": at,
            **summary,
            "files": files,
            "note": "written before the deletion it lists; the audit log's retention.purge entry naming this "
            "folder and this manifest's SHA-256 confirms the deletion, without one nothing was deleted",
        }
        body = json.dumps(manifest, ensure_ascii=False, indent=1, sort_keys=True).encode() + b"\n"
        _write(folder / "manifest.json", [body])
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as e:
        raise EdgefaceError(
            f"writing the purge export in {folder} failed ({e.strerror}); nothing was deleted. Free space or "
            "choose another folder (--export) and run the purge again"
        ) from None
    return Export(folder, hashlib.sha256(body).hexdigest(), files)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of an export file (for checks and tools)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
