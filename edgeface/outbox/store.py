"""The outbox: results held durably in SQLite until the broker has acknowledged them.

Durability. The database runs in WAL mode with ``synchronous=FULL`` by default: every commit fsyncs
the write-ahead log, so a result for which :meth:`Outbox.put` returned survives a power cut. With
``NORMAL`` the database cannot be corrupted by a power cut either, but the last commits before it
may roll back; since the pipeline forgets a result as soon as ``put`` returns, that would be a
silent loss, so ``NORMAL`` is only for storage that cannot afford one fsync per result (and is
documented as such in the config). Deleting acknowledged rows is batched, so its fsyncs are few.

Bounds. The outbox holds at most ``max_results`` rows and ``max_bytes`` of payload. When a new
result does not fit, the overflow policy ``drop_oldest_no_match`` deletes the oldest rows that are
worth less than or as much as the new one (``refused`` first, then ``no_match``; a candidate
match is never dropped), logging each drop and counting it; if that cannot make room, or the policy
is ``refuse``, :class:`~edgeface.errors.OutboxFull` is raised and the caller decides. Optional TTLs
(separate for matches and for the rest) expire rows that waited too long, also logged and counted.

Order. Rows leave in priority order (matches, then no-matches, then refusals), oldest first within
a priority, and only through :meth:`Outbox.ack`, which the publisher calls when the broker
acknowledged the message.

Damage. Each row carries a CRC-32 of its stored payload; a row whose payload fails the CRC, does not
open with the device key, is not a JSON object, or names another id is moved to the ``quarantine``
table with the reason (kept, counted, logged) instead of being sent or stopping the drain.

At rest. With a :class:`~edgeface.protect.sealed.Sealer` (``protect.encrypt``, the default on a unit)
each payload (candidates, scores, crop) is stored sealed: AES-256-GCM under the outbox's sub-key of the
device key, a fresh nonce per row, bound to the row's id. Ids, topics, priorities, times and sizes stay
clear for the bookkeeping; they name nobody. Sealing happens before the write lock is taken, opening as
rows are fetched. Format 2 marks files that may hold sealed rows, so an older edgeface refuses them
instead of quarantining what it cannot read.

Several threads and processes may use one outbox file: each thread gets its own connection and
writers take SQLite's write lock (``BEGIN IMMEDIATE``) with a busy timeout.

Longer than 500 lines because every transaction of the queue (put, make room, fetch, ack, purge,
quarantine) follows the same connection, locking and error rules, which read best in one class; the
on-disk format and the values are in :mod:`.rows`.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..errors import OutboxError, OutboxFull
from ..logs import get_logger
from .rows import COUNTERS, SCHEMA, OutboxStats, Pending, Priority, check_row, crc32, translate
from .settings import OutboxConfig

if TYPE_CHECKING:
    from ..config import Config
    from ..protect.sealed import Sealer

log = get_logger(__name__)

FORMAT_VERSION = 2  # 2: payloads may be sealed (no change to the tables)
BUSY_TIMEOUT_MS = 30_000
ACK_BATCH = 500  # ids per DELETE (and per payload read) statement

OnFull = Literal["drop_oldest_no_match", "refuse"]
Synchronous = Literal["full", "normal"]


class Outbox:
    """A bounded, durable, prioritised queue of result payloads in one SQLite file.

    ``put`` stores a result (durable when it returns), ``fetch`` hands out the next rows to send,
    ``ack`` deletes rows the broker acknowledged. Thread-safe; several processes may share a file.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_results: int = 100_000,
        max_bytes: int = 256 * 1024 * 1024,
        on_full: OnFull = "drop_oldest_no_match",
        ttl_s: float = 0.0,
        match_ttl_s: float = 0.0,
        max_quarantined: int = 1000,
        synchronous: Synchronous = "full",
        max_db_pages: int | None = None,
        cache_kib: int = 1024,
        sealer: Sealer | None = None,
    ) -> None:
        """Open (creating if needed) the outbox at ``path``.

        ``ttl_s`` / ``match_ttl_s``: seconds after which an unsent no-match/refused or match result
        expires (0 = never). ``max_db_pages`` caps the database file (SQLite ``max_page_count``)
        so a full disk can be simulated where a small filesystem cannot be mounted. ``cache_kib``: SQLite
        page cache per connection (one per thread that uses the outbox); it fills as the file grows and
        then holds, so it bounds the memory the outbox adds to the process. ``sealer``: store payloads
        encrypted (see the module docstring); None stores them as given.
        """
        if on_full not in ("drop_oldest_no_match", "refuse"):
            raise ValueError(f"on_full={on_full!r}: expected 'drop_oldest_no_match' or 'refuse'")
        if synchronous not in ("full", "normal"):
            raise ValueError(f"synchronous={synchronous!r}: expected 'full' or 'normal'")
        self.path = Path(path)
        self.max_results = max_results
        self.max_bytes = max_bytes
        self.on_full: OnFull = on_full
        self.ttl_s = ttl_s
        self.match_ttl_s = match_ttl_s
        self.max_quarantined = max_quarantined
        self.synchronous: Synchronous = synchronous
        self.max_db_pages = max_db_pages
        if cache_kib < 64:
            raise ValueError(f"cache_kib={cache_kib}: expected at least 64")
        self.cache_kib = cache_kib
        self.sealer = sealer
        self._local = threading.local()
        self._conns: list[tuple[threading.Thread, sqlite3.Connection]] = []  # one per thread, with its owner
        self._conns_lock = threading.Lock()
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutboxError(f"outbox folder {self.path.parent} cannot be created: {e}") from e
        self._migrate()

    @classmethod
    def from_config(cls, outbox: OutboxConfig, sealer: Sealer | None = None) -> Outbox:
        """Open the outbox described by the ``[outbox]`` config section; ``sealer`` from
        :func:`edgeface.protect.keys.sealer_for` (config, "outbox")."""
        return cls(
            outbox.path,
            max_results=outbox.max_results,
            max_bytes=outbox.max_bytes,
            on_full=outbox.on_full,
            ttl_s=outbox.ttl_s,
            match_ttl_s=outbox.match_ttl_s,
            max_quarantined=outbox.max_quarantined,
            synchronous=outbox.synchronous,
            cache_kib=outbox.cache_kib,
            sealer=sealer,
        )

    @classmethod
    def for_unit(cls, config: Config) -> Outbox:
        """The unit's outbox as the daemon opens it: the ``[outbox]`` section, payloads sealed with the device
        key when ``protect.encrypt`` is on (see :mod:`edgeface.protect.keys`)."""
        from ..protect.keys import sealer_for

        return cls.from_config(config.outbox, sealer_for(config, "outbox"))

    # ----------------------------------------------------------------------------------------------
    # connections

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if self._closed:
            raise OutboxError(f"outbox {self.path} is closed")
        try:
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise OutboxError(
                    f"outbox {self.path}: SQLite refused WAL mode (got {mode!r}); put outbox.path on a "
                    "local filesystem (not NFS or a FAT card without locking)."
                )
            conn.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
            conn.execute("PRAGMA journal_size_limit = 8388608")  # WAL shrinks back to 8 MiB after checkpoints
            conn.execute(f"PRAGMA cache_size = -{int(self.cache_kib)}")  # negative: KiB, not pages
            if self.max_db_pages is not None:
                conn.execute(f"PRAGMA max_page_count = {int(self.max_db_pages)}")
        except sqlite3.Error as e:
            raise translate(e, self.path, "opening the database") from e
        self._local.conn = conn
        with self._conns_lock:
            # a restarted stage runs in a new thread: close what threads that ended left open (and their caches)
            ended = [c for t, c in self._conns if not t.is_alive()]
            self._conns = [(t, c) for t, c in self._conns if t.is_alive()] + [(threading.current_thread(), conn)]
        for c in ended:
            try:
                c.close()
            except sqlite3.Error:
                pass  # its thread is gone; nothing can be pending in it
        return conn

    def _write(self, fn: Any, doing: str) -> Any:
        """Run ``fn(conn)`` inside one write transaction; translate SQLite errors."""
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                out = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return out
        except sqlite3.Error as e:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # the original error below says what happened
            raise translate(e, self.path, doing) from e

    def _migrate(self) -> None:
        conn = self._conn()
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as e:
            raise translate(e, self.path, "reading its format version") from e
        if version > FORMAT_VERSION:
            raise OutboxError(
                f"outbox {self.path} has format {version}, newer than this edgeface understands "
                f"({FORMAT_VERSION}); upgrade edgeface or point outbox.path at another file."
            )

        if version < FORMAT_VERSION:
            try:
                counters = "".join(f"INSERT OR IGNORE INTO counters VALUES ('{n}', 0);" for n in COUNTERS)
                conn.executescript(f"BEGIN IMMEDIATE;{SCHEMA}{counters}PRAGMA user_version = {FORMAT_VERSION};COMMIT;")
            except sqlite3.Error as e:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise translate(e, self.path, "creating its tables") from e

    def limit_pages(self, pages: int | None) -> None:
        """Cap the database file at ``pages`` pages on every connection (None lifts the cap).

        SQLite then fails writes with SQLITE_FULL exactly as on a full disk: used to emulate one
        where a small filesystem cannot be mounted.
        """
        self.max_db_pages = pages
        with self._conns_lock:
            conns = [c for _, c in self._conns]
        for c in conns:
            c.execute(f"PRAGMA max_page_count = {int(pages) if pages is not None else 1073741823}")

    def close(self) -> None:
        """Close every connection (all threads). Safe to call twice."""
        self._closed = True
        with self._conns_lock:
            conns, self._conns = [c for _, c in self._conns], []
        for c in conns:
            try:
                c.close()
            except sqlite3.Error:
                pass  # closing is best effort; nothing is pending in a closed connection
        self._local = threading.local()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------------------------------------
    # writing

    def put(self, id: str, topic: str, payload: bytes, priority: Priority, *, now: float | None = None) -> None:
        """Store one result durably (returns after the commit is on disk).

        Raises :class:`OutboxFull` when the limits are reached and the policy cannot make room,
        :class:`OutboxDiskFull` when the disk is full; in both cases nothing was stored.
        """
        self.put_many([(id, topic, payload, priority)], now=now)

    def put_many(self, items: Sequence[tuple[str, str, bytes, Priority]], *, now: float | None = None) -> None:
        """Store several results in one transaction: all of them, or none (then it raises)."""
        if not items:
            return
        now = time.time() if now is None else now
        rows = []
        for id_, topic, payload, priority in items:
            priority = Priority(priority)
            if not isinstance(payload, (bytes, bytearray)):
                raise TypeError("payload must be bytes (the encoded JSON)")
            stored = self.sealer.seal(payload, id_.encode()) if self.sealer is not None else bytes(payload)
            if len(stored) > self.max_bytes:
                raise OutboxFull(
                    f"result {id_} is {len(stored)} bytes, more than the whole outbox may hold "
                    f"(outbox.max_bytes = {self.max_bytes}); make results smaller (mqtt.include_crop, "
                    "mqtt.max_crop_bytes) or raise outbox.max_bytes."
                )
            ttl = self.match_ttl_s if priority == Priority.MATCH else self.ttl_s
            rows.append(
                (
                    id_,
                    topic,
                    int(priority),
                    now,
                    now + ttl if ttl > 0 else None,
                    len(stored),
                    crc32(stored),
                    stored,
                )
            )

        def insert(c: sqlite3.Connection) -> list[tuple[str, int]]:
            dropped: list[tuple[str, int]] = []
            stored = 0
            for row in rows:
                if c.execute("SELECT 1 FROM pending WHERE id = ?", (row[0],)).fetchone():
                    continue  # already pending: storing a result twice is a no-op (idempotent put)
                dropped += self._make_room(c, row[5], Priority(row[2]))
                c.execute(
                    "INSERT INTO pending (id, topic, priority, created_at, expires_at, size, crc, payload) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
                stored += 1
            self._bump(c, "enqueued", stored)
            if dropped:
                self._bump(c, "dropped_overflow", len(dropped))
            return dropped

        try:
            dropped = self._write(insert, "storing a result")
        except OutboxFull:
            self._count_refusal()
            raise
        for rid, prio in dropped:
            log.warning(
                "outbox.dropped", id=rid, priority=Priority(prio).name.lower(), reason="overflow", policy=self.on_full
            )

    def _count_refusal(self) -> None:
        try:
            self._write(lambda c: self._bump(c, "refused_full", 1), "counting a refusal")
        except OutboxError:
            pass  # counting is secondary to the OutboxFull the caller is about to get

    def _make_room(self, c: sqlite3.Connection, size: int, priority: Priority) -> list[tuple[str, int]]:
        """Delete rows the policy allows until one more row of ``size`` bytes fits; or raise."""
        count, total = c.execute("SELECT SUM(count), SUM(bytes) FROM totals").fetchone()
        over_count = count + 1 - self.max_results
        over_bytes = total + size - self.max_bytes
        if over_count <= 0 and over_bytes <= 0:
            return []
        matches = c.execute("SELECT count FROM totals WHERE priority = 0").fetchone()[0]
        limits = (
            f"{count} results ({matches} matches), {total} bytes; limits outbox.max_results = "
            f"{self.max_results}, outbox.max_bytes = {self.max_bytes}"
        )
        if self.on_full == "refuse":
            raise OutboxFull(
                f"outbox full: {limits}, policy 'refuse'. The result was not stored. Restore the "
                "network link so results drain, or raise the limits."
            )
        victims: list[tuple[int, str, int, int]] = []
        freed_rows = freed_bytes = 0
        # Oldest first among rows worth no more than the new one; refusals before no-matches.
        cur = c.execute(
            "SELECT seq, id, size, priority FROM pending WHERE priority >= ? AND priority > 0 "
            "ORDER BY priority DESC, seq ASC",
            (int(max(priority, Priority.NO_MATCH)),),
        )
        for seq, rid, rsize, rprio in cur:
            if freed_rows >= over_count and freed_bytes >= over_bytes:
                break
            victims.append((seq, rid, rsize, rprio))
            freed_rows += 1
            freed_bytes += rsize
        cur.close()
        if freed_rows < over_count or freed_bytes < over_bytes:
            raise OutboxFull(
                f"outbox full: {limits}; no result that may be dropped is left (candidate matches are "
                f"never dropped, and a {priority.name.lower()} result may only displace results worth "
                "no more). The result was not stored. Restore the network link so results drain, or "
                "raise the limits."
            )
        c.executemany("DELETE FROM pending WHERE seq = ?", [(v[0],) for v in victims])
        return [(v[1], v[3]) for v in victims]

    @staticmethod
    def _bump(c: sqlite3.Connection, name: str, n: int) -> None:
        c.execute("UPDATE counters SET value = value + ? WHERE name = ?", (n, name))

    # ----------------------------------------------------------------------------------------------
    # draining

    def fetch(self, limit: int, exclude: Collection[str] = (), *, now: float | None = None) -> list[Pending]:
        """Up to ``limit`` rows to send next, in priority order, skipping ids in ``exclude``.

        Expired rows are not returned (see :meth:`purge_expired`). Damaged rows are moved to
        quarantine here and not returned. The rows to send are chosen first and only their payloads are
        read: the excluded ones (in flight) would otherwise be read again at every fetch, which costs
        most when payloads carry face crops (SQLite reads a row's overflow pages only for its payload).
        """
        if limit <= 0:
            return []
        now = time.time() if now is None else now
        conn = self._conn()
        try:
            conn.execute("BEGIN")  # one snapshot for both reads
            try:
                order = conn.execute(
                    "SELECT seq, id FROM pending WHERE expires_at IS NULL OR expires_at > ? "
                    "ORDER BY priority, seq LIMIT ?",
                    (now, limit + len(exclude)),
                ).fetchall()
                chosen = [seq for seq, rid in order if rid not in exclude][:limit]
                rows = []
                for i in range(0, len(chosen), ACK_BATCH):
                    part = chosen[i : i + ACK_BATCH]
                    rows += conn.execute(
                        "SELECT seq, id, topic, priority, created_at, crc, payload FROM pending "
                        f"WHERE seq IN ({','.join('?' * len(part))})",
                        part,
                    ).fetchall()
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")
            rank = {seq: i for i, seq in enumerate(chosen)}
            rows.sort(key=lambda r: rank[r[0]])
        except sqlite3.Error as e:
            raise translate(e, self.path, "reading pending results") from e
        out: list[Pending] = []
        for seq, rid, topic, prio, created, crc, stored in rows:
            payload, reason = check_row(rid, topic, prio, crc, stored, self.sealer)
            if payload is None:
                try:
                    self.quarantine(seq, reason or "damaged")
                except OutboxError as e:  # e.g. a full disk: skip it now, quarantine on a later fetch
                    log.warning("outbox.quarantine_deferred", id=rid, reason=reason, error=str(e))
                continue
            out.append(Pending(seq, rid, topic, Priority(prio), created, payload))
        return out

    def ack(self, ids: Iterable[str]) -> int:
        """Delete rows the broker acknowledged; returns how many were still there.

        The delete is committed without its own fsync (``synchronous=NORMAL`` for this transaction):
        a delete lost to a power cut only means the result is sent again, which the receiver
        absorbs, and the next fsync'd ``put`` makes it durable anyway. This keeps the write lock
        short, so ``put`` latency does not pay for the drain.
        """
        ids = list(ids)
        if not ids:
            return 0

        def delete(c: sqlite3.Connection) -> int:
            n = 0
            for i in range(0, len(ids), ACK_BATCH):
                chunk = ids[i : i + ACK_BATCH]
                marks = ",".join("?" * len(chunk))
                n += c.execute(f"DELETE FROM pending WHERE id IN ({marks})", chunk).rowcount
            self._bump(c, "delivered", n)
            return n

        conn = self._conn()
        relaxed = self.synchronous != "normal"
        if relaxed:
            conn.execute("PRAGMA synchronous = NORMAL")
        try:
            return int(self._write(delete, "deleting acknowledged results"))
        finally:
            if relaxed:
                conn.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")

    def purge_expired(self, *, now: float | None = None) -> int:
        """Delete rows past their TTL (logged and counted); returns how many."""
        if self.ttl_s <= 0 and self.match_ttl_s <= 0:
            return 0
        now = time.time() if now is None else now

        def purge(c: sqlite3.Connection) -> list[tuple[str, int]]:
            rows = c.execute(
                "SELECT id, priority FROM pending WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,)
            ).fetchall()
            if rows:
                c.execute("DELETE FROM pending WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,))
                self._bump(c, "expired", len(rows))
            return rows

        rows = self._write(purge, "deleting expired results")
        for rid, prio in rows:
            log.warning("outbox.expired", id=rid, priority=Priority(prio).name.lower())
        return len(rows)

    def quarantine(self, seq: int, reason: str) -> None:
        """Move a damaged row out of the queue, keeping it (and why) for inspection."""

        def move(c: sqlite3.Connection) -> str | None:
            row = c.execute(
                "SELECT id, topic, priority, created_at, payload FROM pending WHERE seq = ?", (seq,)
            ).fetchone()
            if row is None:
                return None
            c.execute(
                "INSERT INTO quarantine (id, topic, priority, created_at, payload, reason, quarantined_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (*row, reason, time.time()),
            )
            c.execute("DELETE FROM pending WHERE seq = ?", (seq,))
            self._bump(c, "quarantined_total", 1)
            excess = c.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0] - self.max_quarantined
            if excess > 0:
                c.execute(
                    "DELETE FROM quarantine WHERE rowid IN "
                    "(SELECT rowid FROM quarantine ORDER BY quarantined_at LIMIT ?)",
                    (excess,),
                )
            return str(row[0])

        rid = self._write(move, "quarantining a damaged row")
        if rid is not None:
            log.error(
                "outbox.quarantined",
                id=rid,
                reason=reason,
                path=str(self.path),
                hint="the row is kept in the quarantine table; see `edgeface outbox status`",
            )

    # ----------------------------------------------------------------------------------------------
    # reading

    def stats(self) -> OutboxStats:
        """Depth by priority, counters and the oldest pending row's time (cheap: no table scans)."""
        conn = self._conn()
        try:
            totals = conn.execute("SELECT priority, count, bytes FROM totals ORDER BY priority").fetchall()
            counters = dict(conn.execute("SELECT name, value FROM counters").fetchall())
            # The first row inserted (primary key order, no scan); puts use the clock, so this is the oldest.
            first = conn.execute("SELECT created_at FROM pending ORDER BY seq LIMIT 1").fetchone()
            oldest = first[0] if first else None
            quarantined = conn.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0]
        except sqlite3.Error as e:
            raise translate(e, self.path, "reading its statistics") from e
        by = {Priority(p).name.lower(): (int(n), int(b)) for p, n, b in totals}
        return OutboxStats(
            pending=sum(v[0] for v in by.values()),
            bytes=sum(v[1] for v in by.values()),
            by_priority=by,
            oldest_created_at=oldest,
            quarantined=int(quarantined),
            counters={name: int(counters.get(name, 0)) for name in COUNTERS},
        )

    def pending_count(self) -> int:
        """Rows waiting (from the running totals: no scan)."""
        try:
            return int(self._conn().execute("SELECT SUM(count) FROM totals").fetchone()[0] or 0)
        except sqlite3.Error as e:
            raise translate(e, self.path, "counting pending results") from e

    def __len__(self) -> int:
        return self.pending_count()

    def quarantined(self, limit: int = 100) -> list[dict[str, Any]]:
        """The most recent quarantined rows: id, topic, reason, times and payload size."""
        try:
            rows = (
                self._conn()
                .execute(
                    "SELECT id, topic, priority, created_at, reason, quarantined_at, length(payload) "
                    "FROM quarantine ORDER BY quarantined_at DESC LIMIT ?",
                    (limit,),
                )
                .fetchall()
            )
        except sqlite3.Error as e:
            raise translate(e, self.path, "reading quarantined rows") from e
        keys = ("id", "topic", "priority", "created_at", "reason", "quarantined_at", "bytes")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def pending_among(self, ids: Iterable[str]) -> set[str]:
        """Which of ``ids`` are still waiting (the others were acknowledged, dropped or expired).

        Used by the daemon's retention to delete a result's saved images once it left the unit.
        """
        ids = list(ids)
        out: set[str] = set()
        try:
            conn = self._conn()
            for i in range(0, len(ids), ACK_BATCH):
                chunk = ids[i : i + ACK_BATCH]
                marks = ",".join("?" * len(chunk))
                out.update(r[0] for r in conn.execute(f"SELECT id FROM pending WHERE id IN ({marks})", chunk))
        except sqlite3.Error as e:
            raise translate(e, self.path, "looking up pending results") from e
        return out

    def pending_ids(self) -> list[str]:
        """Every pending id (for audits and tests; scans the table)."""
        try:
            return [r[0] for r in self._conn().execute("SELECT id FROM pending ORDER BY priority, seq")]
        except sqlite3.Error as e:
            raise translate(e, self.path, "listing pending results") from e
