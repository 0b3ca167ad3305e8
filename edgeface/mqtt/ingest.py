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
* counts and logs a malformed message, keeps its first bytes in the ``rejected`` table with the
  reason, acknowledges it (a retry cannot fix it) and carries on: no message can stop a worker;
* when the database itself fails, acknowledges nothing and retries the batch with backoff.

Device status messages (retained, ``edgeface/v1/devices/+/status``) update the ``devices`` table.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from ..errors import EdgefaceError, PayloadError
from ..logs import get_logger
from . import payloads, timestamps, topics
from .link import Backoff, Connection, LinkSettings
from .settings import IngestConfig, MqttConfig

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
        id=str(doc["id"]), device_id=str(doc["device_id"]), captured_at=str(doc["captured_at"]),
        captured_ts=timestamps.parse_timestamp(doc["captured_at"]), decision=str(doc["decision"]),
        top_identity=str(top["identity_id"]) if top else None, top_score=float(top["score"]) if top else None,
        gallery_version=None if version is None else int(version), model_id=str(doc["model_id"]),
        payload=json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False),
    )


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
        values = [(r.id, r.device_id, r.captured_at, r.decision, r.top_identity, r.top_score, r.gallery_version,
                   r.payload, now) for r in rows]
        if not values:
            return 0, 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                before = self._db.total_changes
                self._db.executemany(
                    "INSERT OR IGNORE INTO results (id, device_id, captured_at, decision, top_identity, top_score, "
                    "gallery_version, payload, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", values)
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
                self._db.execute("INSERT INTO rejected VALUES (?, ?, ?, ?, ?, ?)",
                                 (time.time(), printable(topic, 512), kind, printable(error, 500), len(payload),
                                  bytes(payload[:REJECTED_HEAD])))
                self._db.execute("DELETE FROM rejected WHERE rowid <= (SELECT MAX(rowid) FROM rejected) - ?",
                                 (REJECTED_KEEP,))
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
            rows = self._db.execute("SELECT received_at, topic, kind, error, size FROM rejected ORDER BY rowid").fetchall()
        return [dict(zip(("received_at", "topic", "kind", "error", "size"), r)) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def printable(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, with what a database cannot store (NUL, lone surrogates)
    escaped: a rejected message's topic and error must always be storable."""
    return text[:limit].encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


@dataclass
class IngestStats:
    """Counters since the worker started."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    malformed: Counter[str] = field(default_factory=Counter)  # rejected messages, by kind
    statuses: int = 0
    store_errors: int = 0  # flushes the database could not take (nothing acknowledged; retried)
    connected: bool = False
    subscribed: bool = False

    @property
    def malformed_total(self) -> int:
        return sum(self.malformed.values())

    def as_dict(self) -> dict[str, Any]:
        return {"received": self.received, "stored": self.stored, "duplicates": self.duplicates,
                "malformed": dict(self.malformed), "malformed_total": self.malformed_total,
                "statuses": self.statuses, "store_errors": self.store_errors, "connected": self.connected,
                "subscribed": self.subscribed}


@dataclass
class _Rejection:
    topic: str
    kind: str
    error: str
    payload: bytes


@dataclass
class _Pending:
    """A received message waiting for its batch to be written; acknowledged only after that."""

    mid: int
    qos: int
    action: ResultRow | _Rejection | dict[str, Any] | None  # what to write: result, rejection, status, nothing
    done: bool = False  # written (a retried flush does not write it twice)


class Ingest:
    """One ingest worker: a shared-subscription client that stores results idempotently.

    No message can stop it. Everything that depends on a message's content (size, UTF-8, JSON,
    schema, contract rules, the topic's device, the row it becomes) is checked as it arrives; any
    failure there, expected or not, sends the message to the ``rejected`` table with its reason and
    acknowledges it, since delivering it again cannot fix it. Failures of the database itself
    (``store.is_transient``) are the opposite: nothing in the batch is acknowledged, the batch is
    retried with backoff, and the broker keeps the messages. A row the database refuses for its data
    is found by writing the batch one row at a time, and rejected alone.
    """

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
        self._pending: list[_Pending] = []
        self._first_pending_at = 0.0
        self._retry_at = 0.0
        self._backoff = Backoff(reconnect_min_s, reconnect_max_s)
        self._store_backoff = Backoff(0.05, reconnect_max_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: Connection | None = None
        self.error: BaseException | None = None

    @classmethod
    def from_config(cls, mqtt: MqttConfig, ingest: IngestConfig, store: ResultStore, *,
                    client_id: str | None = None) -> Ingest:
        """From the ``[mqtt]`` (broker, TLS, server account) and ``[ingest]`` sections."""
        import socket

        cid = client_id or ingest.client_id or f"ingest-{socket.gethostname()}"
        settings = LinkSettings.from_config(mqtt, cid)
        return cls(store, settings, group=ingest.group, batch=ingest.batch, flush_ms=ingest.flush_ms,
                   max_payload_bytes=mqtt.max_payload_bytes,
                   reconnect_min_s=mqtt.reconnect_min_s, reconnect_max_s=mqtt.reconnect_max_s)

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
                now = time.monotonic()
                if self._pending and now >= self._retry_at and (
                        len(self._pending) >= self.batch or now - self._first_pending_at >= self.flush_s):
                    self._flush()
        finally:
            if self._conn.connected and self._pending:
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
        self._retry_at = 0.0

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            action = self._classify(msg)
        except Exception as e:  # noqa: BLE001 - no message may stop the worker; it is kept with its reason
            log.exception("ingest.message_error", topic=msg.topic[:200], bytes=len(msg.payload))
            action = self._rejection(msg, PayloadError(f"{type(e).__name__}: {e}", "error"))
        if msg.qos == 0 and action is None:
            return  # nothing to write and nothing to acknowledge
        if not self._pending:
            self._first_pending_at = time.monotonic()
        # QoS 0 (never sent by edgeface units) is written with the batch and needs no acknowledgement.
        self._pending.append(_Pending(msg.mid, msg.qos, action))

    def _classify(self, msg: mqtt.MQTTMessage) -> ResultRow | _Rejection | dict[str, Any] | None:
        """What a message becomes: a result row, a status, a rejection, or nothing (a cleared status)."""
        parsed = topics.parse_device_topic(msg.topic)
        if parsed is None or parsed[1] not in ("results", "status"):
            return self._rejection(msg, PayloadError(f"unexpected topic {msg.topic[:200]!r}", "topic"))
        device, kind = parsed
        if kind == "status":
            if not msg.payload:  # an empty retained message clears the status; nothing to record
                return None
            try:
                status = payloads.decode(msg.payload, "status", max_bytes=65536)
                if status["device_id"] != device:
                    raise PayloadError("status device_id differs from its topic", "device_mismatch")
            except PayloadError as e:
                return self._rejection(msg, e)
            return status
        self.stats.received += 1
        try:
            doc = payloads.decode(msg.payload, "result", max_bytes=self.max_payload_bytes)
            if doc["device_id"] != device:
                raise PayloadError(f"payload device_id {doc['device_id']!r} differs from the topic's {device!r}",
                                   "device_mismatch")
        except PayloadError as e:
            return self._rejection(msg, e)
        return result_row(doc)

    def _rejection(self, msg: mqtt.MQTTMessage, e: PayloadError) -> _Rejection:
        self.stats.malformed[e.kind] += 1
        log.warning("ingest.malformed", topic=msg.topic[:200], kind=e.kind, bytes=len(msg.payload), error=str(e)[:300])
        return _Rejection(msg.topic, e.kind, str(e), bytes(msg.payload))

    def _flush(self) -> None:
        """Write the batch, then acknowledge every message in it, in arrival order.

        If the database fails (``store.is_transient``), nothing is acknowledged and the same batch is
        written again after a backoff delay; the broker holds the messages meanwhile (the in-flight
        window bounds how many).
        """
        try:
            self._write(self._pending)
        except Exception as e:  # noqa: BLE001 - the store's failure: keep everything, try again later
            self.stats.store_errors += 1
            delay = self._store_backoff.next_delay()
            self._retry_at = time.monotonic() + delay
            log.error("ingest.store_failed", error=f"{type(e).__name__}: {e}"[:300], pending=len(self._pending),
                      retry_in_s=round(delay, 3), hint="nothing was acknowledged; the broker keeps the messages",
                      exc_info=not self.store.is_transient(e))
            return
        self._store_backoff.reset()
        assert self._conn is not None
        for p in self._pending:
            if p.qos > 0:
                self._conn.client.ack(p.mid, p.qos)
        self._pending.clear()

    def _write(self, batch: list[_Pending]) -> None:
        """Write what the batch holds; marks each entry done, so a retry after a failure skips it."""
        rows = [(p, p.action) for p in batch if isinstance(p.action, ResultRow) and not p.done]
        if rows:
            try:
                self._add([row for _, row in rows])
                for p, _ in rows:
                    p.done = True
            except Exception as e:  # noqa: BLE001 - find the row the database refuses, if it is one row
                if self.store.is_transient(e):
                    raise
                for p, row in rows:
                    self._add_alone(p, row)
        for p in batch:
            if p.done or p.action is None or isinstance(p.action, ResultRow):
                continue
            if isinstance(p.action, dict):
                self._set_status(p, p.action)
            if isinstance(p.action, _Rejection):
                r = p.action
                self.store.reject(r.topic, r.kind, r.error, r.payload)
            p.done = True

    def _add_alone(self, p: _Pending, row: ResultRow) -> None:
        try:
            self._add([row])
        except Exception as e:  # noqa: BLE001 - this row's data is refused: reject it alone
            if self.store.is_transient(e):
                raise
            self.stats.malformed["store"] += 1
            log.warning("ingest.refused_by_store", id=row.id, device=row.device_id, error=f"{type(e).__name__}: {e}"[:300])
            p.action = _Rejection(topics.results_topic(row.device_id), "store",
                                  f"the database refused the row: {type(e).__name__}: {e}",
                                  row.payload.encode("utf-8", "backslashreplace"))
        else:
            p.done = True

    def _set_status(self, p: _Pending, status: dict[str, Any]) -> None:
        try:
            self.store.set_status(status)
            self.stats.statuses += 1
        except Exception as e:  # noqa: BLE001 - a status the database refuses is rejected alone
            if self.store.is_transient(e):
                raise
            self.stats.malformed["store"] += 1
            p.action = _Rejection(topics.status_topic(str(status.get("device_id", ""))), "store",
                                  f"the database refused the status: {type(e).__name__}: {e}",
                                  json.dumps(status).encode())

    def _add(self, rows: list[ResultRow]) -> None:
        stored, dups = self.store.add_rows(rows)
        self.stats.stored += stored
        self.stats.duplicates += dups
        if dups:
            log.info("ingest.duplicates", count=dups, hint="redelivered results, stored once")
