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
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt

from ..errors import EdgefaceError, PayloadError
from ..logs import get_logger
from . import payloads, topics
from .link import Backoff, Connection, LinkSettings
from .results_db import ResultRow, Store, result_row
from .settings import IngestConfig, MqttConfig

log = get_logger(__name__)

STATUS_MAX_BYTES = 65536  # a status is a few hundred bytes; anything far bigger is not one


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
        return {
            "received": self.received,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "malformed": dict(self.malformed),
            "malformed_total": self.malformed_total,
            "statuses": self.statuses,
            "store_errors": self.store_errors,
            "connected": self.connected,
            "subscribed": self.subscribed,
        }


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
        store: Store,
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
            raise EdgefaceError('ingest needs MQTT 5 (shared subscriptions); set mqtt.protocol = "mqtt5"')
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
    def from_config(
        cls, mqtt: MqttConfig, ingest: IngestConfig, store: Store, *, client_id: str | None = None
    ) -> Ingest:
        """From the ``[mqtt]`` (broker, TLS, server account) and ``[ingest]`` sections."""
        import socket

        cid = client_id or ingest.client_id or f"ingest-{socket.gethostname()}"
        settings = LinkSettings.from_config(mqtt, cid)
        return cls(
            store,
            settings,
            group=ingest.group,
            batch=ingest.batch,
            flush_ms=ingest.flush_ms,
            max_payload_bytes=mqtt.max_payload_bytes,
            reconnect_min_s=mqtt.reconnect_min_s,
            reconnect_max_s=mqtt.reconnect_max_s,
        )

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run_guarded, name="edgeface-ingest", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        """Receive and store until :meth:`stop` (in the calling thread)."""
        self._conn = Connection(
            self.settings,
            self._backoff,
            on_up=self._on_up,
            on_down=self._on_down,
            on_message=self._on_message,
            manual_ack=True,
            log_prefix="ingest",
        )
        self._conn.client.on_subscribe = self._on_subscribe
        try:
            while not self._stop.is_set():
                up = self._conn.step(0.01 if self._pending else 0.05)
                self.stats.connected = up
                now = time.monotonic()
                if (
                    self._pending
                    and now >= self._retry_at
                    and (len(self._pending) >= self.batch or now - self._first_pending_at >= self.flush_s)
                ):
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
            log.error(
                "ingest.subscribe_refused",
                reasons=failed,
                hint="the broker ACL must let this account read edgeface/v1/devices/+/results",
            )
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
                status = payloads.decode(msg.payload, "status", max_bytes=STATUS_MAX_BYTES)
                if status["device_id"] != device:
                    raise PayloadError("status device_id differs from its topic", "device_mismatch")
            except PayloadError as e:
                return self._rejection(msg, e)
            return status
        self.stats.received += 1
        try:
            doc = payloads.decode(msg.payload, "result", max_bytes=self.max_payload_bytes)
            if doc["device_id"] != device:
                raise PayloadError(
                    f"payload device_id {doc['device_id']!r} differs from the topic's {device!r}", "device_mismatch"
                )
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
            log.error(
                "ingest.store_failed",
                error=f"{type(e).__name__}: {e}"[:300],
                pending=len(self._pending),
                retry_in_s=round(delay, 3),
                hint="nothing was acknowledged; the broker keeps the messages",
                exc_info=not self.store.is_transient(e),
            )
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
            log.warning(
                "ingest.refused_by_store", id=row.id, device=row.device_id, error=f"{type(e).__name__}: {e}"[:300]
            )
            p.action = _Rejection(
                topics.results_topic(row.device_id),
                "store",
                f"the database refused the row: {type(e).__name__}: {e}",
                row.payload.encode("utf-8", "backslashreplace"),
            )
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
            p.action = _Rejection(
                topics.status_topic(str(status.get("device_id", ""))),
                "store",
                f"the database refused the status: {type(e).__name__}: {e}",
                json.dumps(status).encode(),
            )

    def _add(self, rows: list[ResultRow]) -> None:
        stored, dups = self.store.add_rows(rows)
        self.stats.stored += stored
        self.stats.duplicates += dups
        if dups:
            log.info("ingest.duplicates", count=dups, hint="redelivered results, stored once")
