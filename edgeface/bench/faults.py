"""``edgeface bench faults``: a fault campaign against the whole store-and-forward chain.

Processes, as in the field and at the centre:

    producer (this process) ──put──> outbox.sqlite3 <──fetch/ack── ``edgeface outbox drain`` (publisher)
                                                                        │ TCP proxy (cuttable)
                                                                        v
                                  ``edgeface ingest`` <──────────── mosquitto (restartable)

While the producer stores results at a steady rate, faults are injected one after another:

* ``broker_restart``: mosquitto stopped (SIGTERM, it saves its sessions) and started again;
* ``publisher_kill``: the publisher process killed with SIGKILL while results are pending or in
  flight, then started again (it resends what was never acknowledged);
* ``link_drop``: the proxy resets every connection and refuses new ones for a while;
* ``disk_full``: the filesystem holding the outbox fills up: a small tmpfs filled by a filler file
  when this runs as root and can mount one; otherwise (``page_cap``) SQLite's ``max_page_count``
  freezes the database size and a filler table takes every page that comes free, which yields the
  same SQLITE_FULL error for the producer (the publisher's deletes, in its own process, are not
  capped in that mode). New results are refused with OutboxDiskFull and the producer retries
  them; on the tmpfs, acknowledged rows cannot be deleted either until space returns;
* ``corrupt_row``: with the link cut, a pending row's payload is altered on disk (one byte
  flipped); the publisher must quarantine it, not send it and not stop;
* ``hostile_unit``: another unit, with a valid certificate of its own, connects with the ingest's (or
  the field unit's) client id, tries to join the ingest's shared subscription and to read every
  unit's results, and publishes poison: results and a retained status that pass the old patterns but
  are impossible (times, integers, ids with a newline, NUL characters), and garbage. The broker must
  refuse the subscriptions and keep the client ids apart, and the ingest must reject the poison and
  go on; the field unit's results are accounted for as always.

The broker runs ``deploy/mosquitto/mosquitto.conf`` with the rules ``edgeface broker rules`` writes,
mutual TLS for the unit (through the cuttable proxy) and the central listener for the ingest.

Accounting, by result id: every result whose ``put`` returned must end up stored by the ingest
exactly once with the payload that was stored (``lost`` = 0, ``altered`` = 0), or, for rows the
campaign corrupted, in the outbox's quarantine table. ``duplicates_stored`` counts rows stored
twice (the UNIQUE key makes it 0 by construction; the campaign checks it anyway) and
``redeliveries_absorbed`` how many times the ingest received a result it already had.
"""

from __future__ import annotations

import errno
import json
import os
import random
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import OutboxDiskFull, OutboxFull
from ..mqtt import dynsec
from ..outbox import Outbox
from ..testing import certs
from ..testing.broker import LocalBroker
from ..testing.mqttload import Child, digest, outbox_item, sample_result, wait_for, write_toml
from ..testing.proxy import TcpProxy
from . import hostile
from .hostile import DEVICE, GROUP, HOSTILE, INGEST_CLIENT

KINDS = ("broker_restart", "publisher_kill", "link_drop", "disk_full", "corrupt_row", "hostile_unit")
INGEST = "edgeface-ingest"


def _canonical(payload: bytes) -> str:
    """The ingest stores the parsed document re-serialised compactly; compare in that form."""
    return json.dumps(json.loads(payload), separators=(",", ":"), ensure_ascii=False)


class _Disk:
    """Where the outbox lives, and how to fill it up."""

    def __init__(self, folder: Path, mode: str, size_mb: int) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.mounted = False
        self.mode = "page_cap"
        if mode in ("auto", "tmpfs") and os.geteuid() == 0:
            r = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(folder)],
                check=False,
                capture_output=True,
                text=True,
            )
            if r.returncode == 0:
                self.mounted, self.mode = True, "tmpfs"
            elif mode == "tmpfs":
                raise RuntimeError(f"cannot mount a tmpfs at {folder}: {r.stderr.strip()}")
        elif mode == "tmpfs":
            raise RuntimeError("a tmpfs needs root; use --disk page_cap")
        self.filler = folder / "filler.bin"
        self._stop_filler = threading.Event()
        self._filler_thread: threading.Thread | None = None

    def fill(self, producer_box: Outbox) -> None:
        # Empty the write-ahead log first: SQLite reuses a WAL file in place, so on a full disk the
        # first write fails only once the log must grow. This makes the next write need new space.
        try:
            producer_box._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass  # best effort: a busy checkpoint only delays the first refusal
        if self.mode == "tmpfs":
            chunk = b"\0" * 65536
            try:
                fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                return  # already full
            try:
                while True:
                    os.write(fd, chunk)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
            finally:
                os.close(fd)
        else:
            # The database may not grow, and a filler takes every page that comes free meanwhile
            # (the publisher's deletes free pages), as other files would on a real disk.
            pages = producer_box._conn().execute("PRAGMA page_count").fetchone()[0]
            producer_box.limit_pages(pages)
            self._stop_filler.clear()
            self._filler_thread = threading.Thread(
                target=self._fill_pages, args=(producer_box.path, pages), daemon=True
            )
            self._filler_thread.start()

    def _fill_pages(self, path: Path, pages: int) -> None:
        con = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            con.execute(f"PRAGMA max_page_count = {pages}")
            con.execute("CREATE TABLE IF NOT EXISTS campaign_filler (blob BLOB)")
            while not self._stop_filler.is_set():
                try:
                    con.execute("INSERT INTO campaign_filler VALUES (zeroblob(3000))")
                except sqlite3.OperationalError as e:
                    if "full" not in str(e):
                        raise
                    time.sleep(0.005)
        finally:
            con.close()

    def free(self, producer_box: Outbox) -> None:
        if self.mode == "tmpfs":
            self.filler.unlink(missing_ok=True)
        else:
            self._stop_filler.set()
            if self._filler_thread is not None:
                self._filler_thread.join(10)
            con = sqlite3.connect(producer_box.path, timeout=30)
            con.execute("DROP TABLE IF EXISTS campaign_filler")
            con.commit()
            con.close()
            producer_box.limit_pages(None)

    def close(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.folder)], check=False, capture_output=True)


class _Producer(threading.Thread):
    """Stores results at a steady rate; a result refused for a full disk is kept and retried."""

    def __init__(self, box: Outbox, rate: float, rng: random.Random) -> None:
        super().__init__(name="producer", daemon=True)
        self.box, self.rate, self.rng = box, rate, rng
        self.stop = threading.Event()
        self.committed: dict[str, str] = {}  # id -> canonical payload digest
        self.disk_full_refusals = 0
        self.full_refusals = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        period = 1.0 / self.rate
        next_t = time.monotonic()
        item = None
        try:
            while not self.stop.is_set():
                if item is None:
                    item = outbox_item(sample_result(DEVICE, self.rng))
                try:
                    self.box.put(*item)
                except OutboxDiskFull:
                    self.disk_full_refusals += 1
                    time.sleep(0.02)
                    continue
                except OutboxFull:
                    self.full_refusals += 1
                    time.sleep(0.02)
                    continue
                self.committed[item[0]] = digest(_canonical(item[2]))
                item = None
                next_t += period
                delay = next_t - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                else:
                    next_t = time.monotonic()
        except Exception as e:  # noqa: BLE001 - reported by the campaign, which then fails
            self.error = e


def run(
    workdir: Path,
    *,
    faults: int = 100,
    rate: float = 200.0,
    kinds: tuple[str, ...] = KINDS,
    seed: int = 1,
    disk: str = "auto",
    drain_timeout: float = 180.0,
    say: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """Run the campaign in ``workdir``; returns the counts (see the module docstring)."""
    for k in kinds:
        if k not in KINDS:
            raise ValueError(f"unknown fault kind {k!r}; known: {', '.join(KINDS)}")
    rng = random.Random(seed)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    store = _Disk(workdir / "disk", disk, 24)
    pki = certs.write_pki(workdir / "pki", clients=(DEVICE, HOSTILE), central=(INGEST,))
    broker = LocalBroker.from_deploy(
        workdir / "broker", workdir / "pki", rules=dynsec.build([DEVICE, HOSTILE], ingest=(INGEST,), group=GROUP)
    )
    broker.start()
    proxy = TcpProxy(broker.ports["mtls"])
    outbox_path = store.folder / "outbox.sqlite3"
    db = workdir / "ingest.sqlite3"
    common = {
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.5,
        "tls": True,
        "host": "127.0.0.1",
        "ca_file": str(pki["ca"]),
    }
    dev_cfg = write_toml(
        workdir / "device.toml",
        {
            "device": {"id": DEVICE},
            "outbox": {"path": str(outbox_path)},
            "mqtt": {
                **common,
                "port": proxy.port,
                "keepalive_s": 5,
                "ack_timeout_s": 5,
                "heartbeat_s": 2,
                "inflight": 50,
                "cert_file": str(pki[f"{DEVICE}.crt"]),
                "key_file": str(pki[f"{DEVICE}.key"]),
            },
        },
    )
    ing_cfg = write_toml(
        workdir / "ingest.toml",
        {
            "mqtt": {
                **common,
                "port": broker.ports["central"],
                "cert_file": str(pki[f"{INGEST}.crt"]),
                "key_file": str(pki[f"{INGEST}.key"]),
            },
            "ingest": {"db": str(db), "group": GROUP, "client_id": INGEST_CLIENT},
        },
    )
    publisher = Child(["--config", str(dev_cfg), "--log-json", "outbox", "drain"], workdir / "publisher.log")
    ingest = Child(
        ["--config", str(ing_cfg), "--log-json", "ingest", "--stats-json", str(workdir / "ingest.json")],
        workdir / "ingest.log",
    )
    box = Outbox(outbox_path, max_results=10**6, max_bytes=2**32)
    producer = _Producer(box, rate, rng)
    injected: Counter[str] = Counter()
    details: Counter[str] = Counter()
    corrupted: set[str] = set()
    started = time.monotonic()
    timeline = open(workdir / "faults.jsonl", "w", buffering=1)
    try:
        ingest.start()
        if not wait_for(lambda: f"as {INGEST_CLIENT}" in broker.log_tail(50), 30):
            raise RuntimeError(f"the ingest did not connect; see {ingest.log_path}")
        publisher.start()
        producer.start()
        plan = [kinds[i % len(kinds)] for i in range(faults)]
        rng.shuffle(plan)
        for i, kind in enumerate(plan, 1):
            time.sleep(rng.uniform(0.15, 0.5))  # results flow between faults
            if producer.error is not None:
                raise RuntimeError(f"producer failed: {producer.error}")
            if kind == "broker_restart":
                broker.stop()
                time.sleep(rng.uniform(0.1, 0.5))
                broker.start()
            elif kind == "publisher_kill":
                details["pending_at_kill"] += box.stats().pending
                publisher.kill()
                time.sleep(rng.uniform(0.05, 0.3))
                publisher.start()
            elif kind == "link_drop":
                proxy.cut()
                time.sleep(rng.uniform(0.2, 0.8))
                proxy.restore()
            elif kind == "disk_full":
                before = producer.disk_full_refusals
                store.fill(box)
                # Hold until a result was refused for the full disk (or 5 s), and a little longer.
                if wait_for(lambda before=before: producer.disk_full_refusals > before, 5.0):
                    details["disk_full_faults_that_refused_results"] += 1
                time.sleep(rng.uniform(0.1, 0.5))
                store.free(box)
            elif kind == "hostile_unit":
                for key, n in hostile.visit(broker, pki, rng).items():
                    details[f"hostile_{key}"] += n
            elif kind == "corrupt_row":
                proxy.cut()
                wait_for(lambda: box.stats().pending >= 3, 5)
                rid = _corrupt_newest(outbox_path)
                if rid:
                    corrupted.add(rid)
                proxy.restore()
                if not rid:
                    continue  # nothing pending to corrupt: not counted
            injected[kind] += 1
            timeline.write(json.dumps({"t": round(time.time(), 3), "fault": kind, "n": i}) + "\n")
            if not publisher.alive:
                details["publisher_restarts_after_exit"] += 1
                publisher.start()
            if not ingest.alive:  # never expected: no message may stop the ingest
                details["ingest_exits"] += 1
                ingest.start()
            if i % 10 == 0:
                say(f"{i}/{faults} faults, {len(producer.committed)} results stored on the device")
        producer.stop.set()
        producer.join(10)
        if producer.error is not None:
            raise RuntimeError(f"producer failed: {producer.error}")
        say("faults done; draining")
        committed = dict(producer.committed)

        def settled() -> bool:
            if box.stats().pending:
                return False
            q = {r["id"] for r in box.quarantined(10**6)}
            return len(_stored_ids(db) | q) >= len(committed)

        drained = wait_for(settled, drain_timeout, 0.25)
        seconds = time.monotonic() - started
        publisher.stop()
        time.sleep(0.5)
        ingest.stop()
    finally:
        producer.stop.set()
        publisher.kill()
        ingest.kill()
        proxy.close()
        broker.stop()
        pending_left = box.stats().pending
        quarantined = {r["id"]: r["reason"] for r in box.quarantined(10**6)}
        box.close()
        store.close()
        timeline.close()

    stored = _stored_payloads(db)
    rows, distinct = _row_counts(db)
    ids = set(committed)
    lost = ids - set(stored) - set(quarantined)
    altered = [i for i in set(stored) & ids if digest(stored[i]) != committed[i]]
    ingest_stats = json.loads((workdir / "ingest.json").read_text()) if (workdir / "ingest.json").exists() else {}
    figures: dict[str, Any] = {
        "faults_injected": sum(injected.values()),
        "faults_by_kind": dict(injected),
        "disk_full_mode": store.mode,
        "results_sent": len(ids),
        "results_stored": len(set(stored) & ids),
        "quarantined": len(quarantined),
        "quarantined_undelivered": len(set(quarantined) - set(stored)),
        "quarantined_not_corrupted_by_campaign": len(set(quarantined) - corrupted),
        "corrupted_rows": len(corrupted),
        "corrupted_but_delivered_intact": len(corrupted & set(stored)),
        "lost": len(lost),
        "altered": len(altered),
        "phantom": len(set(stored) - ids),
        "duplicates_stored": rows - distinct,
        "redeliveries_absorbed": ingest_stats.get("duplicates"),
        "malformed_at_ingest": ingest_stats.get("malformed_total"),
        "ingest_exits": details.pop("ingest_exits", 0),
        "pending_left": pending_left,
        "drained": drained,
        "disk_full_refusals": producer.disk_full_refusals,
        "publisher_starts": publisher.starts,
        "broker_starts": broker.starts,
        "link_cuts": proxy.cuts,
        "seconds": round(seconds, 1),
        "rate_per_s": rate,
        **{k: v for k, v in details.items()},
    }
    if lost:
        figures["lost_ids_sample"] = sorted(lost)[:10]
        (workdir / "lost.txt").write_text("\n".join(sorted(lost)) + "\n")
    (workdir / "figures.json").write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def _corrupt_newest(path: Path) -> str | None:
    """Flip one byte in the middle of the newest pending row's payload (bit rot on the card)."""
    con = sqlite3.connect(path, timeout=30)
    try:
        row = con.execute("SELECT seq, id, payload FROM pending ORDER BY seq DESC LIMIT 1").fetchone()
        if row is None:
            return None
        seq, rid, payload = row
        data = bytearray(payload)
        data[len(data) // 2] ^= 0x5A
        con.execute("UPDATE pending SET payload = ? WHERE seq = ?", (bytes(data), seq))
        con.commit()
        return str(rid)
    finally:
        con.close()


def _stored_ids(db: Path) -> set[str]:
    return set(_stored_payloads(db))


def _stored_payloads(db: Path) -> dict[str, str]:
    if not db.exists():
        return {}
    con = sqlite3.connect(db, timeout=30)
    try:
        return dict(con.execute("SELECT id, payload FROM results"))
    except sqlite3.OperationalError:
        return {}
    finally:
        con.close()


def _row_counts(db: Path) -> tuple[int, int]:
    con = sqlite3.connect(db, timeout=30)
    try:
        n, d = con.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM results").fetchone()
        return int(n), int(d)
    finally:
        con.close()
