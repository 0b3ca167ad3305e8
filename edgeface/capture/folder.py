"""The folder source: photos copied into a folder (a camera card, a phone), each processed once, in order.

* **Never twice.** A ledger (SQLite, fsync'd per change) records each file version (path, size,
  modification time) as 'done' once its results are in the outbox; a done version is never handed
  out again, across restarts. A file that changes (same name, new content) is a new version.
* **Never missed.** A file is marked 'processing' durably before it is handed out. After a crash or
  kill -9 it is handed out again at start-up; the results it had already stored carry ids derived
  from the file, so the outbox and the server absorb the repeat. A file whose processing was
  interrupted ``max_attempts`` times is set aside as 'failed' (logged) instead of crashing the unit
  forever.
* **Never half-read.** A file is read once its size and modification time have been stable for
  ``settle_s`` (by its own timestamp, or by this process's observation when the unit's clock is
  behind the camera's); names that writers use while writing (``.name``, ``*.part``, ``*.tmp``,
  ``*.crdownload``, ``*~``) are never read. The strict decoder refuses a truncated file anyway; it is
  retried when it changes.
* **In order.** Oldest modification time first, then path.

The ledger keeps a row per file version; rows of files that left the folder are dropped after
``LEDGER_KEEP_S`` (a file copied in again after that is processed again).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CaptureError, SourceUnavailable
from ..logs import get_logger
from .base import EndOfSource, Frame, Outcome, Source
from .settings import CaptureFolderConfig

log = get_logger(__name__)

TEMP_SUFFIXES = (".part", ".partial", ".tmp", ".temp", ".crdownload", ".download", ".filepart", "~")
FINAL = ("done", "unreadable", "failed")
LEDGER_KEEP_S = 30 * 86400
PRUNE_EVERY_SCANS = 500


@dataclass
class _Version:
    size: int
    mtime_ns: int
    status: str
    attempts: int


class FolderLedger:
    """Durable progress of one folder: a row per file path with the version last handed out."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER NOT NULL, "
                "mtime_ns INTEGER NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL, faces INTEGER, "
                "results TEXT, error TEXT, started_at REAL, finished_at REAL)"
            )
        except (OSError, sqlite3.Error) as e:
            raise CaptureError(
                f"folder progress file {self.path} cannot be opened ({e}); check that run.state_dir "
                "is writable by the service user"
            ) from e
        self._lock = threading.Lock()

    def load(self) -> dict[str, _Version]:
        with self._lock:
            rows = self._db.execute("SELECT path, size, mtime_ns, status, attempts FROM files").fetchall()
        return {r[0]: _Version(int(r[1]), int(r[2]), str(r[3]), int(r[4])) for r in rows}

    def start(self, rel: str, size: int, mtime_ns: int) -> int:
        """Record that this version is being processed (durable); returns its attempt number (1 = first)."""
        with self._lock:
            row = self._db.execute("SELECT size, mtime_ns, attempts FROM files WHERE path = ?", (rel,)).fetchone()
            attempts = int(row[2]) + 1 if row and (row[0], row[1]) == (size, mtime_ns) else 1
            self._db.execute(
                "INSERT INTO files (path, size, mtime_ns, status, attempts, started_at) VALUES (?, ?, ?, "
                "'processing', ?, ?) ON CONFLICT(path) DO UPDATE SET size = excluded.size, mtime_ns = "
                "excluded.mtime_ns, status = 'processing', attempts = excluded.attempts, started_at = "
                "excluded.started_at, faces = NULL, results = NULL, error = NULL, finished_at = NULL",
                (rel, size, mtime_ns, attempts, time.time()),
            )
        return attempts

    def finish(self, rel: str, size: int, mtime_ns: int, outcome: Outcome) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE files SET status = ?, faces = ?, results = ?, error = ?, finished_at = ? "
                "WHERE path = ? AND size = ? AND mtime_ns = ?",
                (
                    outcome.status,
                    outcome.faces,
                    json.dumps(list(outcome.results)),
                    outcome.error[:500] or None,
                    time.time(),
                    rel,
                    size,
                    mtime_ns,
                ),
            )

    def prune(self, present: set[str], older_than: float) -> int:
        """Forget finished rows of files no longer in the folder, finished before ``older_than``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT path FROM files WHERE status IN ('done', 'unreadable', 'failed') AND finished_at < ?",
                (older_than,),
            ).fetchall()
            gone = [(r[0],) for r in rows if r[0] not in present]
            self._db.executemany("DELETE FROM files WHERE path = ?", gone)
        return len(gone)

    def rows(self) -> list[dict[str, Any]]:
        """Every row (for reports and tests)."""
        keys = (
            "path",
            "size",
            "mtime_ns",
            "status",
            "attempts",
            "faces",
            "results",
            "error",
            "started_at",
            "finished_at",
        )
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(keys)} FROM files ORDER BY started_at").fetchall()
        out = [dict(zip(keys, r, strict=True)) for r in rows]
        for r in out:
            r["results"] = json.loads(r["results"]) if r["results"] else []
        return out

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute("SELECT status, COUNT(*) FROM files GROUP BY status").fetchall())

    def close(self) -> None:
        with self._lock:
            self._db.close()


def ledger_path(state_dir: Path, folder: Path) -> Path:
    """One progress file per watched folder, so changing capture.folder.path starts a fresh ledger."""
    digest = hashlib.sha256(str(Path(folder).resolve()).encode()).hexdigest()[:12]
    return Path(state_dir) / f"folder-{digest}.sqlite3"


def read_ledger(state_dir: Path, folder: Path) -> list[dict[str, Any]]:
    """Every row of a folder's ledger (for reports and checks from another process); [] if none yet."""
    path = ledger_path(state_dir, folder)
    if not path.exists():
        return []
    ledger = FolderLedger(path)
    try:
        return ledger.rows()
    finally:
        ledger.close()


def _is_temp(name: str) -> bool:
    return name.startswith(".") or name.lower().endswith(TEMP_SUFFIXES)


class FolderSource(Source):
    """New photos in ``capture.folder.path``; see the module docstring for the guarantees."""

    kind = "folder"
    live = False

    def __init__(self, config: CaptureFolderConfig, state_dir: Path, name: str = "") -> None:
        super().__init__(name or str(config.path))
        self.cfg = config
        self.root = Path(config.path)
        self.suffixes = tuple(s.lower() for s in config.suffixes)
        self.ledger_file = ledger_path(state_dir, self.root)
        self.ledger: FolderLedger | None = None
        self._known: dict[str, _Version] = {}
        self._inflight: set[str] = set()
        self._seen: dict[str, tuple[int, int, float]] = {}  # rel -> (size, mtime_ns, stable since, monotonic)
        self._ready: deque[tuple[int, str, int]] = deque()
        self._next_scan = 0.0
        self._unsettled = 0
        self._scans = 0
        self._lock = threading.Lock()  # read() runs in the capture thread, done() in the sink thread

    # -- life cycle --------------------------------------------------------------------------------

    def open(self) -> None:
        if not self.root.is_dir():
            raise SourceUnavailable(
                f"capture.folder.path = {str(self.root)!r} does not exist or is not a folder (a card not mounted "
                "yet?); retrying. Create it, or point capture.folder.path at the folder photos are copied to."
            )
        if self.ledger is None:
            self.ledger = FolderLedger(self.ledger_file)
            with self._lock:
                self._known = self.ledger.load()
            leftovers = [k for k, v in self._known.items() if v.status == "processing"]
            if leftovers:
                log.warning(
                    "capture.folder.resume",
                    files=len(leftovers),
                    first=leftovers[0],
                    hint="these were being processed when the unit stopped; they are processed again",
                )
        self._next_scan = 0.0
        log.info("capture.folder.open", folder=str(self.root), known=len(self._known), ledger=str(self.ledger_file))

    def close(self) -> None:
        self._ready.clear()  # re-scanned on the next open; in-flight frames stay in flight

    def shutdown(self) -> None:
        self.close()
        if self.ledger is not None:
            self.ledger.close()
            self.ledger = None

    # -- reading -----------------------------------------------------------------------------------

    def read(self, timeout: float) -> Frame | None:
        deadline = time.monotonic() + timeout
        while True:
            while self._ready:
                mtime_ns, rel, size = self._ready.popleft()
                frame = self._hand_out(rel, size, mtime_ns)
                if frame is not None:
                    return frame
            now = time.monotonic()
            if now >= self._next_scan:
                self._scan()
                self._next_scan = time.monotonic() + self.cfg.poll_s
                if self._ready:
                    continue
                if self.cfg.once and not self._unsettled:
                    raise EndOfSource(f"every file in {self.root} is processed")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            time.sleep(max(0.0, min(remaining, self._next_scan - time.monotonic())))

    def _hand_out(self, rel: str, size: int, mtime_ns: int) -> Frame | None:
        path = self.root / rel
        try:
            st = path.stat()
        except FileNotFoundError:
            return None  # moved away since the scan
        except OSError as e:
            raise SourceUnavailable(f"{path}: {e.strerror or e}") from e
        if (st.st_size, st.st_mtime_ns) != (size, mtime_ns):
            return None  # changed since the scan: it settles again first
        assert self.ledger is not None
        attempts = self.ledger.start(rel, size, mtime_ns)
        with self._lock:
            self._known[rel] = _Version(size, mtime_ns, "processing", attempts)
            self._inflight.add(rel)
        return Frame(
            source=self.name,
            key=f"{rel}@{size}:{mtime_ns}",
            captured_at=mtime_ns / 1e9,
            seq=self.next_seq(),
            path=path,
            attempts=0,
            meta={"rel": rel, "size": size, "mtime_ns": mtime_ns, "attempt": attempts},
        )

    def _walk(self) -> list[tuple[str, int, int]]:
        out = []
        try:
            walker = os.walk(self.root) if self.cfg.recursive else [(str(self.root), [], os.listdir(self.root))]
            for dirpath, dirnames, filenames in walker:
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for name in filenames:
                    if _is_temp(name) or not name.lower().endswith(self.suffixes):
                        continue
                    full = os.path.join(dirpath, name)
                    try:
                        st = os.stat(full, follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    if st.st_mode & 0o170000 != 0o100000:  # regular files only
                        continue
                    out.append((os.path.relpath(full, self.root), st.st_size, st.st_mtime_ns))
        except FileNotFoundError as e:
            raise SourceUnavailable(f"capture.folder.path = {str(self.root)!r} went away ({e}); retrying") from e
        except OSError as e:
            raise SourceUnavailable(f"cannot list {self.root}: {e.strerror or e}") from e
        if not self.root.is_dir():
            raise SourceUnavailable(f"capture.folder.path = {str(self.root)!r} went away; retrying")
        return out

    def _scan(self) -> None:
        wall, mono = time.time(), time.monotonic()
        settle = self.cfg.settle_s
        pending: list[tuple[int, str, int]] = []
        unsettled = 0
        present: set[str] = set()
        failed: list[tuple[str, _Version]] = []
        with self._lock:
            for rel, size, mtime_ns in self._walk():
                present.add(rel)
                if rel in self._inflight:
                    continue
                known = self._known.get(rel)
                same = known is not None and (known.size, known.mtime_ns) == (size, mtime_ns)
                if same and known is not None and known.status in FINAL:
                    continue
                seen = self._seen.get(rel)
                if seen is None or (seen[0], seen[1]) != (size, mtime_ns):
                    seen = self._seen[rel] = (size, mtime_ns, mono)
                if settle > 0 and wall - mtime_ns / 1e9 < settle and mono - seen[2] < settle:
                    unsettled += 1
                    continue
                if same and known is not None and known.attempts >= self.cfg.max_attempts:
                    failed.append((rel, known))
                    continue
                pending.append((mtime_ns, rel, size))
            for rel in [r for r in self._seen if r not in present]:
                del self._seen[rel]
        for rel, known in failed:
            self._set_aside(rel, known)
        pending.sort()
        self._ready = deque(pending)
        self._unsettled = unsettled
        self._scans += 1
        if self._scans % PRUNE_EVERY_SCANS == 0 and self.ledger is not None:
            dropped = self.ledger.prune(present, time.time() - LEDGER_KEEP_S)
            if dropped:
                with self._lock:
                    for rel in [r for r in self._known if r not in present]:
                        del self._known[rel]
                log.info("capture.folder.pruned", rows=dropped)

    def _set_aside(self, rel: str, known: _Version) -> None:
        assert self.ledger is not None
        error = f"processing was interrupted {known.attempts} times (capture.folder.max_attempts)"
        self.ledger.finish(rel, known.size, known.mtime_ns, Outcome("failed", error=error))
        with self._lock:
            self._known[rel] = _Version(known.size, known.mtime_ns, "failed", known.attempts)
        log.error(
            "capture.folder.failed",
            file=str(self.root / rel),
            attempts=known.attempts,
            hint="the file is set aside and not retried; inspect it, then copy it in again under a new name",
        )

    # -- progress ----------------------------------------------------------------------------------

    def done(self, frame: Frame, outcome: Outcome) -> None:
        rel, size, mtime_ns = frame.meta["rel"], frame.meta["size"], frame.meta["mtime_ns"]
        if self.ledger is None:  # pragma: no cover - the pipeline finishes frames before shutdown
            raise CaptureError("folder source used after shutdown")
        self.ledger.finish(rel, size, mtime_ns, outcome)
        with self._lock:
            self._known[rel] = _Version(size, mtime_ns, outcome.status, int(frame.meta.get("attempt", 1)))
            self._inflight.discard(rel)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.update(folder=str(self.root), waiting=len(self._ready) + self._unsettled, in_flight=len(self._inflight))
        if self.ledger is not None:
            out["ledger"] = self.ledger.counts()
        return out
