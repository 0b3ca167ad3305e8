"""The disk outbox: durability, order, bounds and overflow policy, TTL, quarantine, full disk."""

from __future__ import annotations

import json
import multiprocessing
import random
import sqlite3
import threading
from pathlib import Path

import pytest

from edgeface.errors import OutboxDiskFull, OutboxError, OutboxFull
from edgeface.outbox import Outbox, Priority, new_id


def payload(rid: str, size: int = 100) -> bytes:
    return json.dumps({"id": rid, "pad": "x" * size}).encode()


def put(box: Outbox, priority: Priority, size: int = 100, now: float | None = None) -> str:
    rid = new_id()
    box.put(rid, "edgeface/v1/devices/u/results", payload(rid, size), priority, now=now)
    return rid


def test_results_survive_reopening_and_leave_only_when_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    box = Outbox(path)
    ids = [put(box, Priority.NO_MATCH) for _ in range(5)]
    fetched = box.fetch(10)
    assert [r.id for r in fetched] == ids
    box.close()  # fetched but never acknowledged: nothing may be lost
    box = Outbox(path)
    assert box.pending_ids() == ids
    assert box.ack(ids[:2]) == 2
    assert box.ack(ids[:2]) == 0  # acknowledging twice is harmless
    box.close()
    box = Outbox(path)
    assert box.pending_ids() == ids[2:]
    stats = box.stats()
    assert stats.pending == 3 and stats.counters["delivered"] == 2 and stats.counters["enqueued"] == 5
    box.close()


def test_wal_mode_and_synchronous_setting(tmp_path: Path) -> None:
    for mode, value in (("full", 2), ("normal", 1)):
        box = Outbox(tmp_path / f"{mode}.sqlite3", synchronous=mode)  # type: ignore[arg-type]
        con = box._conn()
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("PRAGMA synchronous").fetchone()[0] == value
        assert con.execute("PRAGMA cache_size").fetchone()[0] == -1024  # KiB: the outbox's memory is bounded
        box.close()
    box = Outbox(tmp_path / "small.sqlite3", cache_kib=256)
    assert box._conn().execute("PRAGMA cache_size").fetchone()[0] == -256
    box.close()


def test_connections_of_ended_threads_are_closed(tmp_path: Path) -> None:
    """A restarted stage runs in a new thread; the old thread's connection (and its cache) must not pile up."""
    box = Outbox(tmp_path / "o.sqlite3")
    seen: list[sqlite3.Connection] = []

    def use() -> None:
        box.pending_count()
        seen.append(box._conn())

    for _ in range(3):
        t = threading.Thread(target=use)
        t.start()
        t.join()
    assert len(box._conns) == 2  # this thread's and the last thread's
    for old in seen[:2]:
        with pytest.raises(sqlite3.ProgrammingError):
            old.execute("SELECT 1")
    seen[2].execute("SELECT 1")
    box.close()


def test_matches_leave_first_then_no_matches_then_refusals_oldest_first(outbox: Outbox) -> None:
    order = [Priority.REFUSED, Priority.NO_MATCH, Priority.MATCH, Priority.NO_MATCH, Priority.MATCH, Priority.REFUSED]
    ids = [(put(outbox, p), p) for p in order]
    expected = (
        [i for i, p in ids if p == Priority.MATCH]
        + [i for i, p in ids if p == Priority.NO_MATCH]
        + [i for i, p in ids if p == Priority.REFUSED]
    )
    assert [r.id for r in outbox.fetch(10)] == expected
    # Skipping what is in flight.
    assert [r.id for r in outbox.fetch(2, exclude=set(expected[:3]))] == expected[3:5]


def test_put_is_idempotent_for_the_same_id(outbox: Outbox) -> None:
    rid = new_id()
    outbox.put(rid, "t", payload(rid), Priority.MATCH)
    outbox.put(rid, "t", payload(rid), Priority.MATCH)
    assert outbox.pending_ids() == [rid]


def test_overflow_drops_oldest_refused_then_no_match_never_a_match(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", max_results=4)
    m1 = put(box, Priority.MATCH)
    n1 = put(box, Priority.NO_MATCH)
    put(box, Priority.REFUSED)  # the first to go
    n2 = put(box, Priority.NO_MATCH)
    m2 = put(box, Priority.MATCH)  # full: the refusal goes first
    assert set(box.pending_ids()) == {m1, n1, n2, m2}
    m3 = put(box, Priority.MATCH)  # then the oldest no-match
    assert set(box.pending_ids()) == {m1, n2, m2, m3}
    n3 = put(box, Priority.NO_MATCH)  # a no-match displaces an older no-match
    assert set(box.pending_ids()) == {m1, m2, m3, n3}
    m4 = put(box, Priority.MATCH)
    assert set(box.pending_ids()) == {m1, m2, m3, m4}
    # Only matches left: new work is refused with a clear error, nothing is dropped.
    with pytest.raises(OutboxFull, match="never dropped"):
        put(box, Priority.MATCH)
    with pytest.raises(OutboxFull):
        put(box, Priority.NO_MATCH)
    assert set(box.pending_ids()) == {m1, m2, m3, m4}
    s = box.stats()
    assert s.counters["dropped_overflow"] == 4 and s.counters["refused_full"] == 2
    box.close()


def test_a_refusal_cannot_displace_a_no_match(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", max_results=2)
    ids = [put(box, Priority.NO_MATCH), put(box, Priority.NO_MATCH)]
    with pytest.raises(OutboxFull):
        put(box, Priority.REFUSED)
    assert box.pending_ids() == ids
    box.close()


def test_overflow_by_bytes(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", max_bytes=10_000)
    first = [put(box, Priority.NO_MATCH, size=2000) for _ in range(4)]
    m = put(box, Priority.MATCH, size=3000)  # needs room: the oldest no-match goes
    assert set(box.pending_ids()) == {*first[1:], m}
    assert box.stats().bytes <= 10_000
    with pytest.raises(OutboxFull, match="more than the whole outbox"):
        put(box, Priority.MATCH, size=20_000)
    box.close()


def test_refuse_policy_refuses_without_dropping(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", max_results=2, on_full="refuse")
    ids = [put(box, Priority.NO_MATCH), put(box, Priority.REFUSED)]
    with pytest.raises(OutboxFull, match="policy 'refuse'"):
        put(box, Priority.MATCH)
    assert box.pending_ids() == ids
    box.close()


def test_ttl_expires_rows_separately_for_matches(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", ttl_s=60, match_ttl_s=0)
    old_match = put(box, Priority.MATCH, now=1000.0)
    old_no = put(box, Priority.NO_MATCH, now=1000.0)
    new_no = put(box, Priority.NO_MATCH, now=1100.0)
    assert box.purge_expired(now=1070.0) == 1
    assert box.pending_ids() == [old_match, new_no]
    assert old_no not in box.pending_ids()
    assert box.stats().counters["expired"] == 1
    box.close()
    box = Outbox(tmp_path / "m.sqlite3", match_ttl_s=10)
    m = put(box, Priority.MATCH, now=0.0)
    assert [r.id for r in box.fetch(5, now=5.0)] == [m]
    assert box.purge_expired(now=11.0) == 1 and box.pending_ids() == []
    box.close()


@pytest.mark.parametrize("damage", ["flip", "not_json", "other_id", "array"])
def test_a_damaged_row_is_quarantined_and_the_drain_goes_on(outbox: Outbox, damage: str) -> None:
    ids = [put(outbox, Priority.NO_MATCH) for _ in range(3)]
    con = sqlite3.connect(outbox.path)
    blob = con.execute("SELECT payload FROM pending WHERE id = ?", (ids[1],)).fetchone()[0]
    if damage == "flip":
        bad = bytearray(blob)
        bad[10] ^= 0x01
        con.execute("UPDATE pending SET payload = ? WHERE id = ?", (bytes(bad), ids[1]))
    else:
        new = {"not_json": b"\xff\xfe garbage", "other_id": payload(new_id()), "array": b"[1, 2]"}[damage]
        import zlib

        con.execute("UPDATE pending SET payload = ?, crc = ? WHERE id = ?", (new, zlib.crc32(new), ids[1]))
    con.commit()
    con.close()
    rows = outbox.fetch(10)
    assert [r.id for r in rows] == [ids[0], ids[2]]
    q = outbox.quarantined()
    assert [r["id"] for r in q] == [ids[1]] and q[0]["reason"]
    s = outbox.stats()
    assert s.quarantined == 1 and s.pending == 2 and s.counters["quarantined_total"] == 1


def test_full_disk_refuses_with_a_clear_error_and_keeps_everything(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3")
    kept = [put(box, Priority.MATCH, size=500) for _ in range(3)]
    pages = box._conn().execute("PRAGMA page_count").fetchone()[0]
    box.limit_pages(pages)  # the database cannot grow: SQLITE_FULL, as on a full disk
    with pytest.raises(OutboxDiskFull, match="disk is full"):
        for _ in range(200):
            put(box, Priority.MATCH, size=4000)
    stored = box.pending_ids()
    assert stored[:3] == kept
    assert len(stored) == box.stats().pending  # totals stay consistent after the failed write
    box.limit_pages(None)
    after = put(box, Priority.MATCH)
    assert box.pending_ids()[-1] == after
    box.close()


def test_newer_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    Outbox(path).close()
    con = sqlite3.connect(path)
    con.execute("PRAGMA user_version = 99")
    con.commit()
    con.close()
    with pytest.raises(OutboxError, match="newer"):
        Outbox(path)


def test_a_damaged_file_gives_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(OutboxError, match="damaged|not a database"):
        Outbox(path)


def _producer(path: str, n: int, seed: int) -> None:
    box = Outbox(path)
    rnd = random.Random(seed)
    for _ in range(n):
        put(box, Priority(rnd.randrange(3)))
    box.close()


def test_several_processes_can_store_into_one_outbox(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    Outbox(path).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_producer, args=(str(path), 150, s)) for s in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    box = Outbox(path)
    s = box.stats()
    assert s.pending == len(set(box.pending_ids())) == 450
    assert sum(v[0] for v in s.by_priority.values()) == 450
    box.close()


def test_enqueue_result_checks_encodes_and_prioritises(outbox: Outbox) -> None:
    from edgeface.errors import PayloadError
    from edgeface.mqtt import enqueue_result, payloads

    q = {"score": 0.9, "size_px": 90, "sharpness": 40, "yaw": 1, "pitch": 2, "roll": 3}
    no = payloads.result_payload(
        device_id="unit-a",
        decision="no_match",
        candidates=[payloads.Candidate("p", 0.2)],
        threshold=0.6,
        quality=q,
        gallery_version=1,
        model_id="m",
    )
    yes = payloads.result_payload(
        device_id="unit-a",
        decision="match",
        candidates=[payloads.Candidate("p", 0.9)],
        threshold=0.6,
        quality=q,
        gallery_version=1,
        model_id="m",
    )
    bad = dict(yes, decision="no_match")
    assert enqueue_result(outbox, no) == no["id"]
    enqueue_result(outbox, yes)
    with pytest.raises(PayloadError):
        enqueue_result(outbox, bad)
    rows = outbox.fetch(5)
    assert [r.id for r in rows] == [yes["id"], no["id"]]
    assert rows[0].topic == "edgeface/v1/devices/unit-a/results"
    assert json.loads(rows[0].payload) == yes


def test_a_damaged_row_on_a_full_disk_does_not_stop_the_others(outbox: Outbox) -> None:
    ids = [put(outbox, Priority.NO_MATCH, size=3000) for _ in range(3)]
    con = sqlite3.connect(outbox.path)
    con.execute("UPDATE pending SET payload = randomblob(20000) WHERE id = ?", (ids[0],))  # needs new pages
    con.commit()
    con.close()
    # Fill the database's page budget completely so the quarantine insert cannot get a page.
    outbox.limit_pages(outbox._conn().execute("PRAGMA page_count").fetchone()[0] + 10)
    filler = sqlite3.connect(outbox.path)
    filler.execute(f"PRAGMA max_page_count = {outbox.max_db_pages}")
    filler.execute("CREATE TABLE filler (b BLOB)")
    with pytest.raises(sqlite3.OperationalError, match="full"):
        while True:
            filler.execute("INSERT INTO filler VALUES (zeroblob(2000))")
            filler.commit()
    filler.rollback()
    assert [r.id for r in outbox.fetch(10)] == ids[1:]  # sent meanwhile; the damaged one waits
    assert outbox.quarantined() == [] and ids[0] in outbox.pending_ids()
    filler.close()
    outbox.limit_pages(None)
    space = sqlite3.connect(outbox.path)  # free space again (without the cap)
    space.execute("DROP TABLE filler")
    space.commit()
    space.close()
    assert [r.id for r in outbox.fetch(10)] == ids[1:]
    assert [q["id"] for q in outbox.quarantined()] == [ids[0]]
