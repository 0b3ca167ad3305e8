"""Where ingest workers write: the typed row a checked result becomes, the :class:`Store` protocol,
and the SQLite :class:`ResultStore` of ``edgeface ingest --db`` (the server writes to its own
database through ``edgeface.server.ingest.DbResultStore``, the same protocol)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from . import timestamps

REJECTED_KEEP = 1000  # malformed messages kept for inspection (first bytes only)
REJECTED_HEAD = 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    id              TEXT PRIMARY KEY,
    device_id       TEXT NOT NULL,
    captured_at     TEXT NOT NULL,
    decision        TEXT NOT NULL,
    top_identity    TEXT,
    top_score       REAL,
    gallery_version INTEGER,
    payload         TEXT NOT NULL,
    received_at     REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS results_device ON results (device_id, captured_at);
CREATE INDEX IF NOT EXISTS results_decision ON results (decision, received_at);
CREATE TABLE IF NOT EXISTS devices (
    device_id  TEXT PRIMARY KEY,
    state      TEXT NOT NULL,
    status     TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected (
    received_at REAL NOT NULL,
    topic       TEXT NOT NULL,
    kind        TEXT NOT NULL,
    error       TEXT NOT NULL,
    size        INTEGER NOT NULL,
    head        BLOB NOT NULL
);
"""


@dataclass(frozen=True)
class ResultRow:
    """A checked result, converted to exactly what the stores write.

    Everything that depends on the message (times, numbers, the JSON text) is computed here, before any
    database is involved, so an error in it is the message's fault and never the store's.
    """

    id: str
    device_id: str
    captured_at: str
    captured_ts: float
    decision: str
    top_identity: str | None
    top_score: float | None
    gallery_version: int | None
    model_id: str
    payload: str


def result_row(doc: Mapping[str, Any]) -> ResultRow:
    """The row of a result that passed :func:`payloads.decode` (``ValueError`` and friends if not)."""
    top = doc["candidates"][0] if doc["candidates"] else None
    version = doc["gallery_version"]
    return ResultRow(
        id=str(doc["id"]),
        device_id=str(doc["device_id"]),
        captured_at=str(doc["captured_at"]),
        captured_ts=timestamps.parse_timestamp(doc["captured_at"]),
        decision=str(doc["decision"]),
        top_identity=str(top["identity_id"]) if top else None,
        top_score=float(top["score"]) if top else None,
        gallery_version=None if version is None else int(version),
        model_id=str(doc["model_id"]),
        payload=json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False),
    )


class Store(Protocol):
    """What a worker writes to: this module's SQLite :class:`ResultStore`, or the server's database
    (``edgeface.server.ingest.DbResultStore``)."""

    def is_transient(self, error: BaseException) -> bool: ...

    def add_rows(self, rows: Sequence[ResultRow], *, received_at: float | None = None) -> tuple[int, int]: ...

    def set_status(self, doc: Mapping[str, Any]) -> None: ...

    def reject(self, topic: str, kind: str, error: str, payload: bytes) -> None: ...


class ResultStore:
    """SQLite store of received results; the result id is the primary key (idempotent inserts)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.execute("PRAGMA busy_timeout = 30000")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    @staticmethod
    def is_transient(error: BaseException) -> bool:
        """True when ``error`` is the database's trouble (locked, disk full, I/O), not the data's."""
        return isinstance(error, (sqlite3.OperationalError, OSError))

    def add(self, docs: Iterable[Mapping[str, Any]], *, received_at: float | None = None) -> tuple[int, int]:
        """Store results in one transaction; returns (stored, duplicates)."""
        return self.add_rows([result_row(d) for d in docs], received_at=received_at)

    def add_rows(self, rows: Sequence[ResultRow], *, received_at: float | None = None) -> tuple[int, int]:
        """Store prepared rows in one transaction; returns (stored, duplicates)."""
        now = time.time() if received_at is None else received_at
        values = [
            (
                r.id,
                r.device_id,
                r.captured_at,
                r.decision,
                r.top_identity,
                r.top_score,
                r.gallery_version,
                r.payload,
                now,
            )
            for r in rows
        ]
        if not values:
            return 0, 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                before = self._db.total_changes
                self._db.executemany(
                    "INSERT OR IGNORE INTO results (id, device_id, captured_at, decision, top_identity, top_score, "
                    "gallery_version, payload, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    values,
                )
                stored = self._db.total_changes - before
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return stored, len(values) - stored

    def set_status(self, doc: Mapping[str, Any]) -> None:
        """Record a device's latest status (in arrival order)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO devices (device_id, state, status, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(device_id) DO UPDATE SET state = excluded.state, status = excluded.status, "
                "updated_at = excluded.updated_at",
                (doc["device_id"], doc["state"], json.dumps(doc, separators=(",", ":")), time.time()),
            )

    def reject(self, topic: str, kind: str, error: str, payload: bytes) -> None:
        """Keep the start of a malformed message (bounded to the last REJECTED_KEEP)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO rejected VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        time.time(),
                        printable(topic, 512),
                        kind,
                        printable(error, 500),
                        len(payload),
                        bytes(payload[:REJECTED_HEAD]),
                    ),
                )
                self._db.execute(
                    "DELETE FROM rejected WHERE rowid <= (SELECT MAX(rowid) FROM rejected) - ?", (REJECTED_KEEP,)
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0])

    def ids(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT id FROM results")]

    def payloads(self) -> dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT id, payload FROM results"))

    def device(self, device_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT status FROM devices WHERE device_id = ?", (device_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def rejected(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT received_at, topic, kind, error, size FROM rejected ORDER BY rowid"
            ).fetchall()
        return [dict(zip(("received_at", "topic", "kind", "error", "size"), r, strict=True)) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def printable(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, with what a database cannot store (NUL, lone surrogates)
    escaped: a rejected message's topic and error must always be storable."""
    return text[:limit].encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
