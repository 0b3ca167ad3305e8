"""The receiving side: take results from the broker, validate them, store each result id once.

Several ingest workers share the load through the MQTT 5 shared subscription
``$share/<group>/edgeface/v1/devices/+/results``. Each worker:

* checks every message before it is parsed (size), then that it is strict UTF-8 JSON following
  ``result.v1.json`` and the contract's rules, and that the payload's ``device_id`` is the device
  of the topic it came on (the broker ACL ties the topic to the sender's identity);
* stores good results with ``INSERT OR IGNORE`` on the result id (UNIQUE), so a redelivered result
  is counted as a duplicate and stored once;
* acknowledges (PUBACK, in arrival order) only after the batch holding the message is committed,
  so a crash before the commit makes the broker deliver it again;
* counts and logs a malformed message, keeps its first bytes in the ``rejected`` table for
  inspection, acknowledges it (a retry cannot fix it) and carries on.

Device status messages (retained, ``edgeface/v1/devices/+/status``) update the ``devices`` table.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from ..errors import EdgefaceError, PayloadError
from ..logs import get_logger
from . import payloads, topics
from .link import Backoff, Connection, LinkSettings

log = get_logger(__name__)

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

    def add(self, docs: Iterable[Mapping[str, Any]], *, received_at: float | None = None) -> tuple[int, int]:
        """Store results in one transaction; returns (stored, duplicates)."""
        now = time.time() if received_at is None else received_at
        rows = []
        for d in docs:
            top = d["candidates"][0] if d["candidates"] else None
            rows.append((d["id"], d["device_id"], d["captured_at"], d["decision"],
                         top["identity_id"] if top else None, top["score"] if top else None,
                         d["gallery_version"], json.dumps(d, separators=(",", ":"), ensure_ascii=False), now))
        if not rows:
            return 0, 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                before = self._db.total_changes
                self._db.executemany(
                    "INSERT OR IGNORE INTO results (id, device_id, captured_at, decision, top_identity, top_score, "
                    "gallery_version, payload, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
                stored = self._db.total_changes - before
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return stored, len(rows) - stored

    def set_status(self, doc: Mapping[str, Any]) -> None:
        """Record a device's latest status (the newest by its timestamp wins)."""
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
            self._db.execute("INSERT INTO rejected VALUES (?, ?, ?, ?, ?, ?)",
                             (time.time(), topic[:512], kind, error[:500], len(payload), bytes(payload[:REJECTED_HEAD])))
            self._db.execute("DELETE FROM rejected WHERE rowid <= (SELECT MAX(rowid) FROM rejected) - ?",
                             (REJECTED_KEEP,))
            self._db.execute("COMMIT")

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
            rows = self._db.execute("SELECT received_at, topic, kind, error, size FROM rejected ORDER BY rowid").fetchall()
        return [dict(zip(("received_at", "topic", "kind", "error", "size"), r)) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


@dataclass
class IngestStats:
    """Counters since the worker started."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    malformed: Counter[str] = field(default_factory=Counter)
    statuses: int = 0
    connected: bool = False
    subscribed: bool = False

    @property
    def malformed_total(self) -> int:
        return sum(self.malformed.values())

    def as_dict(self) -> dict[str, Any]:
        return {"received": self.received, "stored": self.stored, "duplicates": self.duplicates,
                "malformed": dict(self.malformed), "malformed_total": self.malformed_total,
                "statuses": self.statuses, "connected": self.connected, "subscribed": self.subscribed}


class Ingest:
    """One ingest worker: a shared-subscription client that stores results idempotently."""

    def __init__(
        self,
        store: ResultStore,
        settings: LinkSettings,
        *,
        group: str = "edgeface-ingest",
        batch: int = 200,
        flush_ms: float = 50.0,
        max_payload_bytes: int = 131072,
        reconnect_min_s: float = 1.0,
        reconnect_max_s: float = 60.0,
        subscribe_status: bool = True,
    ) -> None:
        if settings.protocol != "mqtt5":
            raise EdgefaceError("ingest needs MQTT 5 (shared subscriptions); set mqtt.protocol = \"mqtt5\"")
        self.store = store
        self.settings = settings
        self.results_filter = topics.shared_results_filter(group)
        self.batch = batch
        self.flush_s = flush_ms / 1000
        self.max_payload_bytes = max_payload_bytes
        self.subscribe_status = subscribe_status
        self.stats = IngestStats()
        self._pending: list[tuple[int, int, dict[str, Any] | None]] = []  # (mid, qos, doc or None)
        self._first_pending_at = 0.0
        self._backoff = Backoff(reconnect_min_s, reconnect_max_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: Connection | None = None
        self.error: BaseException | None = None

    @classmethod
    def from_config(cls, config: Any, store: ResultStore, *, client_id: str | None = None) -> Ingest:
        """From the ``[mqtt]`` (broker, TLS, server account) and ``[ingest]`` sections."""
        import socket

        cid = client_id or config.ingest.client_id or f"ingest-{socket.gethostname()}"
        settings = LinkSettings.from_config(config.mqtt, cid)
        i = config.ingest
        return cls(store, settings, group=i.group, batch=i.batch, flush_ms=i.flush_ms,
                   max_payload_bytes=config.mqtt.max_payload_bytes,
                   reconnect_min_s=config.mqtt.reconnect_min_s, reconnect_max_s=config.mqtt.reconnect_max_s)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run_guarded, name="edgeface-ingest", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        """Receive and store until :meth:`stop` (in the calling thread)."""
        self._conn = Connection(self.settings, self._backoff, on_up=self._on_up, on_down=self._on_down,
                                on_message=self._on_message, manual_ack=True, log_prefix="ingest")
        self._conn.client.on_subscribe = self._on_subscribe
        try:
            while not self._stop.is_set():
                up = self._conn.step(0.01 if self._pending else 0.05)
                self.stats.connected = up
                if self._pending and (len(self._pending) >= self.batch
                                      or time.monotonic() - self._first_pending_at >= self.flush_s):
                    self._flush()
        finally:
            if self._conn.connected:
                self._flush()
            self._conn.close()

    def _run_guarded(self) -> None:
        try:
            self.run()
        except BaseException as e:  # recorded for the caller, and logged with the traceback
            self.error = e
            log.exception("ingest.crashed", error=str(e))
            raise

    def _on_up(self, client: mqtt.Client, session_present: bool, props: Any) -> None:
        client.subscribe(self.results_filter, qos=1)
        if self.subscribe_status:
            client.subscribe(topics.STATUS_FILTER, qos=1)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        failed = [str(r) for r in reasons if r.is_failure]
        if failed:
            log.error("ingest.subscribe_refused", reasons=failed,
                      hint="the broker ACL must let this account read edgeface/v1/devices/+/results")
            return
        self.stats.subscribed = True

    def _on_down(self, why: str) -> None:
        self.stats.subscribed = False
        # Unacknowledged messages will be delivered again: forget them without storing twice.
        self._pending.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        parsed = topics.parse_device_topic(msg.topic)
        kind = parsed[1] if parsed else ""
        doc: dict[str, Any] | None = None
        if kind == "status":
            if msg.payload:  # an empty retained message clears the status; nothing to record
                try:
                    status = payloads.decode(msg.payload, "status", max_bytes=65536)
                    if status["device_id"] != parsed[0]:  # type: ignore[index]
                        raise PayloadError("status device_id differs from its topic", "device_mismatch")
                    self.store.set_status(status)
                    self.stats.statuses += 1
                except PayloadError as e:
                    self._malformed(msg, e)
        elif kind == "results":
            self.stats.received += 1
            try:
                doc = payloads.decode(msg.payload, "result", max_bytes=self.max_payload_bytes)
                if doc["device_id"] != parsed[0]:  # type: ignore[index]
                    raise PayloadError(
                        f"payload device_id {doc['device_id']!r} differs from the topic's {parsed[0]!r}",  # type: ignore[index]
                        "device_mismatch")
            except PayloadError as e:
                doc = None
                self._malformed(msg, e)
        else:
            self._malformed(msg, PayloadError(f"unexpected topic {msg.topic[:200]!r}", "topic"))
        if msg.qos > 0:
            if not self._pending:
                self._first_pending_at = time.monotonic()
            self._pending.append((msg.mid, msg.qos, doc))

    def _malformed(self, msg: mqtt.MQTTMessage, e: PayloadError) -> None:
        self.stats.malformed[e.kind] += 1
        log.warning("ingest.malformed", topic=msg.topic[:200], kind=e.kind, bytes=len(msg.payload), error=str(e)[:300])
        self.store.reject(msg.topic, e.kind, str(e), msg.payload)

    def _flush(self) -> None:
        """Commit the batch, then acknowledge every message in it, in arrival order."""
        docs = [d for _, _, d in self._pending if d is not None]
        stored, dups = self.store.add(docs)
        self.stats.stored += stored
        self.stats.duplicates += dups
        if dups:
            log.info("ingest.duplicates", count=dups, hint="redelivered results, stored once")
        assert self._conn is not None
        for mid, qos, _ in self._pending:
            self._conn.client.ack(mid, qos)
        self._pending.clear()
