"""Ingest workers for the server: the MQTT ingest of :mod:`edgeface.mqtt.ingest`, storing into the
server's database instead of its own SQLite file.

:class:`DbResultStore` has the three methods :class:`edgeface.mqtt.ingest.Ingest` calls (``add``,
``set_status``, ``reject``), so the receiving logic (validation, batching, PUBACK after commit, the MQTT 5
shared subscription) is the one tested in tests/mqtt. A result id is stored once: ``INSERT ... ON
CONFLICT DO NOTHING`` on the primary key, on SQLite and PostgreSQL alike, so redeliveries and several
workers never make duplicate rows.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import exc, func, select
from sqlalchemy.dialects import postgresql, sqlite

from ..config import Config
from ..logs import get_logger
from ..mqtt import timestamps
from ..mqtt.ingest import Ingest
from ..mqtt.results_db import REJECTED_HEAD, ResultRow, printable, result_row
from .db import Database
from .metrics import count_ingested
from .tables import devices, rejected, results

log = get_logger(__name__)


class DbResultStore:
    """Results, device status and malformed messages, in the server database."""

    def __init__(self, db: Database, *, rejected_keep: int = 1000) -> None:
        self.db = db
        self.rejected_keep = rejected_keep
        self._insert = sqlite.insert if db.is_sqlite else postgresql.insert

    @staticmethod
    def is_transient(error: BaseException) -> bool:
        """True when ``error`` is the database's trouble (connection lost, locked, disk full), not the data's:
        the ingest then acknowledges nothing and retries."""
        return isinstance(
            error, (exc.OperationalError, exc.InterfaceError, exc.TimeoutError, sqlite3.OperationalError, OSError)
        )

    def add(self, docs: Iterable[Mapping[str, Any]], *, received_at: float | None = None) -> tuple[int, int]:
        """Store results in one transaction; returns (stored, duplicates)."""
        return self.add_rows([result_row(d) for d in docs], received_at=received_at)

    def add_rows(self, rows: Sequence[ResultRow], *, received_at: float | None = None) -> tuple[int, int]:
        """Store prepared rows in one transaction; returns (stored, duplicates)."""
        now = time.time() if received_at is None else received_at
        values, last_seen = [], {}
        for r in rows:
            values.append(
                {
                    "id": r.id,
                    "device_id": r.device_id,
                    "captured_at": r.captured_at,
                    "captured_ts": r.captured_ts,
                    "decision": r.decision,
                    "top_identity": r.top_identity,
                    "top_score": r.top_score,
                    "gallery_version": r.gallery_version,
                    "model_id": r.model_id,
                    "payload": r.payload,
                    "received_at": now,
                    "review_status": "pending",
                }
            )
            last_seen[r.device_id] = now
        if not values:
            return 0, 0
        stmt = self._insert(results).on_conflict_do_nothing(index_elements=["id"]).returning(results.c.id)
        with self.db.write() as conn:
            stored = len(conn.execute(stmt, values).all())
            dev = self._insert(devices)
            conn.execute(
                dev.on_conflict_do_update(
                    index_elements=["device_id"], set_={"last_result_at": dev.excluded.last_result_at}
                ),
                [{"device_id": k, "last_result_at": v, "revoked": False} for k, v in last_seen.items()],
            )
        count_ingested("stored", stored)
        count_ingested("duplicate", len(values) - stored)
        return stored, len(values) - stored

    def set_status(self, doc: Mapping[str, Any]) -> None:
        """Record a device's latest status, in arrival order (a last will carries its connection's start
        time, so ordering by the device's timestamp would ignore it)."""
        ins = self._insert(devices)
        values = {
            "device_id": doc["device_id"],
            "state": doc["state"],
            "status": json.dumps(doc, separators=(",", ":")),
            "status_ts": timestamps.parse_timestamp(doc["ts"]),
            "updated_at": time.time(),
        }
        with self.db.write() as conn:
            conn.execute(
                ins.values(revoked=False, **values).on_conflict_do_update(
                    index_elements=["device_id"], set_={k: v for k, v in values.items() if k != "device_id"}
                )
            )

    def reject(self, topic: str, kind: str, error: str, payload: bytes) -> None:
        """Keep the start of a malformed message (the newest ``rejected_keep``)."""
        with self.db.write() as conn:
            conn.execute(
                rejected.insert().values(
                    received_at=time.time(),
                    topic=printable(topic, 512),
                    kind=kind[:32],
                    error=printable(error, 500),
                    size=len(payload),
                    head=bytes(payload[:REJECTED_HEAD]),
                )
            )
            top = conn.execute(select(func.max(rejected.c.id))).scalar_one()
            conn.execute(rejected.delete().where(rejected.c.id <= top - self.rejected_keep))
        count_ingested("rejected")

    def count(self) -> int:
        with self.db.read() as conn:
            return int(conn.execute(select(func.count()).select_from(results)).scalar_one())


def worker_client_id(config: Config, index: int = 0) -> str:
    """A stable MQTT client id per worker (persistent sessions need stable ids; each must be unique)."""
    base = config.ingest.client_id or f"ingest-{socket.gethostname()}"
    return base if index == 0 else f"{base}-{index}"


def make_worker(config: Config, db: Database, index: int = 0) -> Ingest:
    """An ingest worker (not started) on the shared subscription ``ingest.group``."""
    store = DbResultStore(db, rejected_keep=config.server.rejected_keep)
    worker = Ingest.from_config(
        config.mqtt,
        config.ingest,
        store,
        client_id=worker_client_id(config, index),
    )
    log.info(
        "server.ingest.worker",
        client_id=worker.settings.client_id,
        group=config.ingest.group,
        filter=worker.results_filter,
        pid=os.getpid(),
    )
    return worker
