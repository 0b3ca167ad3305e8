"""The outbox's on-disk format and values: the SQLite schema, priorities, rows, counters, the
damage check (and unsealing) of a stored row, and SQLite errors translated into what to do."""

from __future__ import annotations

import json
import sqlite3
import time
import zlib
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

from ..errors import OutboxCorrupt, OutboxDiskFull, OutboxError
from ..protect.sealed import Sealer, SealError, is_sealed

SQLITE_FULL = 13


class Priority(IntEnum):
    """Send order; a lower value leaves first and is dropped last. Matches are never dropped."""

    MATCH = 0
    NO_MATCH = 1
    REFUSED = 2

    @classmethod
    def for_decision(cls, decision: str) -> Priority:
        """The priority of a result payload's ``decision`` ("match", "no_match", "refused")."""
        try:
            return {"match": cls.MATCH, "no_match": cls.NO_MATCH, "refused": cls.REFUSED}[decision]
        except KeyError:
            raise ValueError(f"unknown decision {decision!r}: expected match, no_match or refused") from None


@dataclass(frozen=True)
class Pending:
    """One row ready to send."""

    seq: int
    id: str
    topic: str
    priority: Priority
    created_at: float
    payload: bytes


@dataclass(frozen=True)
class OutboxStats:
    """Depth and counters; ``by_priority`` maps a priority name to (rows, bytes)."""

    pending: int
    bytes: int
    by_priority: dict[str, tuple[int, int]]
    oldest_created_at: float | None
    quarantined: int
    counters: dict[str, int]

    @property
    def matches(self) -> int:
        return self.by_priority.get("match", (0, 0))[0]

    def as_dict(self) -> dict[str, Any]:
        return {
            "pending": self.pending,
            "bytes": self.bytes,
            "by_priority": {k: {"rows": v[0], "bytes": v[1]} for k, v in self.by_priority.items()},
            "oldest_age_s": None
            if self.oldest_created_at is None
            else round(max(0.0, time.time() - self.oldest_created_at), 3),
            "quarantined": self.quarantined,
            **self.counters,
        }


SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT    NOT NULL UNIQUE,
    topic      TEXT    NOT NULL,
    priority   INTEGER NOT NULL,
    created_at REAL    NOT NULL,
    expires_at REAL,
    size       INTEGER NOT NULL,
    crc        INTEGER NOT NULL,
    payload    BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS pending_order ON pending (priority, seq);
CREATE TABLE IF NOT EXISTS totals (
    priority INTEGER PRIMARY KEY,
    count    INTEGER NOT NULL,
    bytes    INTEGER NOT NULL
);
INSERT OR IGNORE INTO totals VALUES (0, 0, 0), (1, 0, 0), (2, 0, 0);
CREATE TRIGGER IF NOT EXISTS pending_ins AFTER INSERT ON pending BEGIN
    UPDATE totals SET count = count + 1, bytes = bytes + NEW.size WHERE priority = NEW.priority;
END;
CREATE TRIGGER IF NOT EXISTS pending_del AFTER DELETE ON pending BEGIN
    UPDATE totals SET count = count - 1, bytes = bytes - OLD.size WHERE priority = OLD.priority;
END;
CREATE TRIGGER IF NOT EXISTS pending_upd AFTER UPDATE OF size, priority ON pending BEGIN
    UPDATE totals SET count = count - 1, bytes = bytes - OLD.size WHERE priority = OLD.priority;
    UPDATE totals SET count = count + 1, bytes = bytes + NEW.size WHERE priority = NEW.priority;
END;
CREATE TABLE IF NOT EXISTS quarantine (
    id             TEXT,
    topic          TEXT,
    priority       INTEGER,
    created_at     REAL,
    payload        BLOB,
    reason         TEXT NOT NULL,
    quarantined_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

COUNTERS = ("enqueued", "delivered", "dropped_overflow", "expired", "quarantined_total", "refused_full")


def crc32(payload: bytes) -> int:
    return zlib.crc32(payload) & 0xFFFFFFFF


def translate(e: sqlite3.Error, path: Path, doing: str) -> OutboxError:
    """Turn an SQLite error into an edgeface error that says what to do."""
    text = str(e).lower()
    code = getattr(e, "sqlite_errorcode", None)  # Python 3.11+; the message text covers 3.10
    if code == SQLITE_FULL or "database or disk is full" in text:
        return OutboxDiskFull(
            f"outbox {path}: the disk is full while {doing} ({e}); the result was not stored. "
            f"Free space on {path.parent}, or move outbox.path to a larger disk."
        )
    if "malformed" in text or "not a database" in text:
        return OutboxCorrupt(
            f"outbox {path} is damaged ({e}) while {doing}. Stop edgeface, move the file aside for "
            "inspection (sqlite3 .recover can salvage rows) and start again with a new outbox."
        )
    return OutboxError(f"outbox {path}: {e} while {doing}; check the storage and its permissions.")


def check_row(
    rid: Any, topic: Any, prio: Any, crc: Any, stored: Any, sealer: Sealer | None
) -> tuple[bytes | None, str | None]:
    """A stored row's plaintext payload and None, or None and why the row cannot be sent as it is.

    The CRC covers the stored bytes; a sealed payload must then open with the outbox's sealer, bound to the
    row's id (a payload moved to another row does not open); the plaintext must be a JSON object naming
    the row's id. A plaintext payload (stored before encryption was on) is still sent.
    """
    if not isinstance(rid, str) or not rid:
        return None, "missing id"
    if not isinstance(topic, str) or not topic:
        return None, "missing topic"
    if prio not in (0, 1, 2):
        return None, f"unknown priority {prio!r}"
    if not isinstance(stored, bytes):
        return None, f"payload is {type(stored).__name__}, not bytes"
    if crc32(stored) != crc:
        return None, "payload fails its CRC-32 (changed on disk)"
    payload = stored
    if is_sealed(stored):
        if sealer is None:
            raise OutboxError(
                f"result {rid} is encrypted and this outbox was opened without the device key; open it with "
                "protect.encrypt on and the unit's device key (gallery.key_file, the credential or the environment)"
            )
        try:
            payload = sealer.open(stored, rid.encode())
        except SealError as e:
            return None, str(e)
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as e:
        return None, f"payload is not JSON ({e})"
    if not isinstance(doc, dict):
        return None, "payload is not a JSON object"
    if doc.get("id") != rid:
        return None, f"payload id {doc.get('id')!r} differs from the row id"
    return payload, None
