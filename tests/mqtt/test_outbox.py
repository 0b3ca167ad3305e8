"""The disk outbox: durability, order, bounds and overflow policy, TTL, quarantine, full disk."""

from __future__ import annotations

import json
import multiprocessing
import random
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from edgeface.errors import OutboxDiskFull, OutboxError, OutboxFull
from edgeface.outbox import Outbox, OutboxStats, Priority, new_id


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
    with pytest.raises(
        OutboxFull,
        match=r"is \d+ bytes, more than the whole outbox may hold \(outbox.max_bytes = 10000\); make results smaller "
        r"\(mqtt.include_crop, mqtt.max_crop_bytes\) or raise outbox.max_bytes\.$",
    ):
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


# --------------------------------------------------------------------------------------------------
# What an operator and the daemon rely on beyond the queue itself (issue 17: each was a surviving mutant).


def test_bad_settings_are_refused_with_what_to_use(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"on_full='drop'.*'drop_oldest_no_match' or 'refuse'"):
        Outbox(tmp_path / "a.sqlite3", on_full="drop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"synchronous='off'.*'full' or 'normal'"):
        Outbox(tmp_path / "b.sqlite3", synchronous="off")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cache_kib=63: expected at least 64"):
        Outbox(tmp_path / "c.sqlite3", cache_kib=63)
    Outbox(tmp_path / "d.sqlite3", cache_kib=64).close()  # the smallest cache allowed
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OutboxError, match=r"outbox folder .*file.* cannot be created"):
        Outbox(tmp_path / "file" / "o.sqlite3")
    Outbox(tmp_path / "new" / "deeper" / "o.sqlite3").close()  # missing folders are made


def test_from_config_applies_every_outbox_setting(tmp_path: Path) -> None:
    from edgeface.config import load_config

    sets = {
        "path": tmp_path / "cfg" / "o.sqlite3",
        "max_results": 7,
        "max_bytes": 50_000,
        "on_full": "refuse",
        "ttl_s": 11.0,
        "match_ttl_s": 22.0,
        "max_quarantined": 3,
        "synchronous": "normal",
        "cache_kib": 300,
    }
    config = load_config(None, env={}, overrides=[f"outbox.{k}={v}" for k, v in sets.items()])
    box = Outbox.from_config(config.outbox)
    got = {k: getattr(box, k) for k in sets}
    assert got == sets and box.sealer is None
    conn = box._conn()
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1
    assert conn.execute("PRAGMA cache_size").fetchone()[0] == -300
    box.close()


def test_connection_settings_bound_the_wal_and_wait_for_other_writers(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", max_db_pages=5000)
    conn = box._conn()
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000  # other processes' writes are waited for
    assert conn.execute("PRAGMA journal_size_limit").fetchone()[0] == 8 * 1024 * 1024
    assert conn.execute("PRAGMA max_page_count").fetchone()[0] == 5000
    box.limit_pages(None)  # lifted: as large as SQLite allows by default
    assert conn.execute("PRAGMA max_page_count").fetchone()[0] >= 1073741823
    box.close()


def test_a_closed_outbox_says_so_and_closes_every_connection(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3")
    conn = box._conn()
    box.close()
    box.close()  # twice is harmless
    with pytest.raises(sqlite3.ProgrammingError):
        conn.execute("SELECT 1")
    with pytest.raises(OutboxError, match=r"o\.sqlite3 is closed"):
        box.pending_count()
    with pytest.raises(OutboxError, match="is closed"):
        put(box, Priority.MATCH)


def test_put_many_stores_all_or_nothing_and_counts_what_it_stored(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", max_results=3, on_full="refuse")
    box.put_many([])  # nothing to do: no transaction, no counter
    assert box.stats().counters["enqueued"] == 0
    with pytest.raises(TypeError, match=r"^payload must be bytes \(the encoded JSON\)$"):
        box.put(new_id(), "t", "{}", Priority.MATCH)  # type: ignore[arg-type]
    a, b = new_id(), new_id()
    box.put_many([(a, "t", payload(a), Priority.MATCH), (b, "t", payload(b), Priority.NO_MATCH)])
    box.put_many([(a, "t", payload(a), Priority.MATCH)])  # already pending: not counted again
    assert box.pending_ids() == [a, b] and box.stats().counters["enqueued"] == 2
    c, d = new_id(), new_id()
    with pytest.raises(OutboxFull, match="policy 'refuse'"):
        box.put_many([(c, "t", payload(c), Priority.MATCH), (d, "t", payload(d), Priority.MATCH)])
    assert box.pending_ids() == [a, b]  # c fitted, but the batch failed as a whole
    s = box.stats()
    assert s.counters["enqueued"] == 2 and s.counters["refused_full"] == 1 and s.pending == 2
    box.close()


def test_the_limits_are_inclusive_and_the_refusal_says_where_they_stand(tmp_path: Path) -> None:
    one = len(payload(new_id()))  # every row below has this size
    box = Outbox(tmp_path / "o.sqlite3", max_results=3, max_bytes=3 * one)
    ids = [put(box, Priority.MATCH) for _ in range(3)]  # exactly at both limits: all fit
    assert box.pending_ids() == ids and box.stats().bytes == 3 * one
    expected = (
        rf"outbox full: 3 results \(3 matches\), {3 * one} bytes; limits outbox.max_results = 3, "
        rf"outbox.max_bytes = {3 * one}; no result that may be dropped is left .*a match result may only "
        r"displace results worth no more\). The result was not stored. Restore the network link so results drain, or "
        r"raise the limits.$"
    )
    with pytest.raises(OutboxFull, match=expected):
        put(box, Priority.MATCH)
    with pytest.raises(OutboxFull, match="a refused result may only displace"):
        put(box, Priority.REFUSED)
    box.close()
    box = Outbox(tmp_path / "b.sqlite3", max_results=100, max_bytes=3 * one + 10)
    ids = [put(box, Priority.NO_MATCH) for _ in range(3)]
    m = put(box, Priority.MATCH)  # 10 bytes short: exactly one no-match goes, the oldest
    assert box.pending_ids() == [m, *ids[1:]]
    assert box.stats().counters["dropped_overflow"] == 1
    box.close()
    box = Outbox(tmp_path / "one.sqlite3", max_bytes=one)
    assert put(box, Priority.MATCH) in box.pending_ids()  # a result as large as the whole outbox still fits
    box.close()
    box = Outbox(tmp_path / "c.sqlite3", max_results=2, on_full="refuse")
    put(box, Priority.NO_MATCH)
    put(box, Priority.NO_MATCH)
    with pytest.raises(
        OutboxFull,
        match=r"2 results \(0 matches\), \d+ bytes; limits outbox.max_results = 2.*policy 'refuse'. The result was "
        r"not stored. Restore the network link so results drain, or raise the limits.$",
    ):
        put(box, Priority.MATCH)
    box.close()


def test_overflow_frees_as_many_rows_as_the_new_one_needs(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", max_bytes=10_000)
    small = [put(box, Priority.REFUSED, size=1000) for _ in range(4)]
    no = put(box, Priority.NO_MATCH, size=1000)
    before = box.stats().bytes
    big = put(box, Priority.NO_MATCH, size=7000)  # needs the room of several rows: the refusals go, oldest first
    left = box.pending_ids()
    assert big in left and no in left
    freed = [i for i in small if i not in left]
    assert freed == small[: len(freed)] and len(freed) >= 2  # the oldest, as many as needed, no more
    assert box.stats().bytes <= 10_000 < before + len(payload(big, 7000))
    box.close()


def test_ttls_apply_by_priority_and_end_exactly_at_expiry(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", ttl_s=60, match_ttl_s=30)
    m = put(box, Priority.MATCH, now=1000.0)
    n = put(box, Priority.NO_MATCH, now=1000.0)
    r = put(box, Priority.REFUSED, now=1000.0)
    assert [x.id for x in box.fetch(10, now=1029.5)] == [m, n, r]
    assert [x.id for x in box.fetch(10, now=1030.0)] == [n, r]  # the match's 30 s are over
    assert box.purge_expired(now=1029.9) == 0
    assert box.purge_expired(now=1030.0) == 1 and box.pending_ids() == [n, r]
    assert [x.id for x in box.fetch(10, now=1059.9)] == [n, r] and box.fetch(10, now=1060.0) == []
    assert box.purge_expired(now=1060.0) == 2 and box.pending_ids() == []
    assert box.stats().counters["expired"] == 3
    box.close()
    short = Outbox(tmp_path / "s.sqlite3", ttl_s=0.5)  # under a second is still a TTL
    put(short, Priority.NO_MATCH, now=0.0)
    assert short.fetch(1, now=0.5) == [] and short.purge_expired(now=0.5) == 1
    short.close()
    short = Outbox(tmp_path / "sm.sqlite3", match_ttl_s=0.5)
    put(short, Priority.MATCH, now=0.0)
    assert short.purge_expired(now=0.5) == 1 and short.pending_ids() == []
    short.close()
    keep = Outbox(tmp_path / "k.sqlite3", ttl_s=0, match_ttl_s=0)
    k = put(keep, Priority.NO_MATCH, now=0.0)
    assert keep.purge_expired(now=1e12) == 0 and keep.pending_ids() == [k]  # 0 keeps a result until it is sent
    assert [x.id for x in keep.fetch(1, now=1e12)] == [k]
    keep.close()


def test_large_batches_fetch_ack_and_look_up_across_statement_chunks(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3")
    ids = [new_id() for _ in range(1203)]  # more than two ACK_BATCH statements' worth
    box.put_many([(i, "t", payload(i, 10), Priority.NO_MATCH) for i in ids])
    assert box.fetch(0) == [] and box.fetch(-1) == []
    rows = box.fetch(1203)
    assert [r.id for r in rows] == ids and [r.seq for r in rows] == sorted(r.seq for r in rows)
    assert [r.id for r in box.fetch(600, exclude=set(ids[:700]))] == ids[700:1300]
    assert [r.id for r in box.fetch(5, exclude={ids[0], ids[2]})] == [ids[1], *ids[3:7]]  # fewer in flight than asked
    assert box.pending_among([*ids, "gone"]) == set(ids) and box.pending_among([]) == set()
    assert box.ack([]) == 0
    assert box.ack(ids[:1100]) == 1100
    assert box.pending_among(ids) == set(ids[1100:]) and len(box) == 103
    assert box.stats().counters["delivered"] == 1100
    box.close()


def test_ack_restores_the_durable_setting_for_the_next_put(tmp_path: Path) -> None:
    for mode, value in (("full", 2), ("normal", 1)):
        box = Outbox(tmp_path / f"{mode}.sqlite3", synchronous=mode)  # type: ignore[arg-type]
        rid = put(box, Priority.MATCH)
        assert box.ack([rid]) == 1
        assert box._conn().execute("PRAGMA synchronous").fetchone()[0] == value
        box.close()


def test_quarantine_keeps_the_newest_rows_with_their_details(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", max_quarantined=2)
    ids = [put(box, p, now=100.0 + k) for k, p in enumerate((Priority.MATCH, Priority.NO_MATCH, Priority.REFUSED))]
    keep = put(box, Priority.NO_MATCH)
    seqs = {r.id: r.seq for r in box.fetch(10)}
    for k, rid in enumerate(ids):
        box.quarantine(seqs[rid], f"reason {k}")
    box.quarantine(10**9, "no such row")  # nothing to move: nothing happens
    q = box.quarantined()
    assert [(r["id"], r["reason"]) for r in q] == [(ids[2], "reason 2"), (ids[1], "reason 1")]  # newest first
    assert q[0]["topic"] == "edgeface/v1/devices/u/results" and q[0]["priority"] == 2
    assert q[0]["created_at"] == 102.0 and q[0]["bytes"] == len(payload(ids[2]))
    assert q[0]["quarantined_at"] >= q[1]["quarantined_at"]
    assert [r["id"] for r in box.quarantined(limit=1)] == [ids[2]]
    s = box.stats()
    assert s.quarantined == 2 and s.counters["quarantined_total"] == 3 and box.pending_ids() == [keep]
    box.close()


def test_a_lowered_quarantine_cap_drops_the_longest_quarantined_rows_and_nothing_pending(tmp_path: Path) -> None:
    """The quarantine must not grow without bound on a unit's disk: each move trims it to the cap, dropping
    the rows quarantined longest ago (by quarantine time, not by row order), as many as a lowered cap needs."""
    path = tmp_path / "o.sqlite3"
    box = Outbox(path, max_quarantined=5)
    bad = [put(box, Priority.NO_MATCH) for _ in range(4)]
    pending = [put(box, Priority.MATCH), put(box, Priority.REFUSED)]
    seqs = {r.id: r.seq for r in box.fetch(10)}
    for rid in bad[:3]:
        box.quarantine(seqs[rid], "damaged")
    assert box.stats().quarantined == 3  # under the cap: nothing trimmed
    # The first row moved is made the most recently quarantined: the trim must go by quarantine time.
    box._conn().execute("UPDATE quarantine SET quarantined_at = ? WHERE id = ?", (time.time() + 3600, bad[0]))
    box.close()
    box = Outbox(path, max_quarantined=2)  # the operator lowered the cap
    box.quarantine(seqs[bad[3]], "damaged")  # 4 rows, cap 2: the two quarantined longest ago go
    assert sorted(r["id"] for r in box.quarantined()) == sorted([bad[0], bad[3]])
    s = box.stats()
    assert s.quarantined == 2 and s.counters["quarantined_total"] == 4
    assert box.pending_ids() == pending and [r.id for r in box.fetch(10)] == pending  # still whole and sendable
    box.close()


def test_stats_report_depth_bytes_age_and_counters(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3")
    empty = box.stats()
    assert empty.pending == 0 and empty.oldest_created_at is None and empty.as_dict()["oldest_age_s"] is None
    assert set(empty.counters) == {
        "enqueued",
        "delivered",
        "dropped_overflow",
        "expired",
        "quarantined_total",
        "refused_full",
    }
    first = put(box, Priority.NO_MATCH, size=100, now=1000.0)
    put(box, Priority.MATCH, size=200, now=2000.0)
    put(box, Priority.MATCH, size=300, now=3000.0)
    s = box.stats()
    sizes = {k: len(payload(first, k)) for k in (100, 200, 300)}
    assert s.by_priority == {
        "match": (2, sizes[200] + sizes[300]),
        "no_match": (1, sizes[100]),
        "refused": (0, 0),
    }
    assert s.pending == 3 == len(box) and s.bytes == sum(sizes.values()) and s.matches == 2
    assert s.oldest_created_at == 1000.0  # the first stored, although a match leaves before it
    d = s.as_dict()
    assert d["by_priority"]["match"] == {"rows": 2, "bytes": sizes[200] + sizes[300]}
    assert d["pending"] == 3 and d["bytes"] == s.bytes and d["enqueued"] == 3 and d["quarantined"] == 0
    assert d["oldest_age_s"] > 1e9  # seconds since 1970 + 1000 s: an age, not a time
    young = OutboxStats(1, 1, {}, time.time() + 60, 0, {})  # a clock stepped back: never a negative age
    assert young.as_dict()["oldest_age_s"] == 0.0 and young.matches == 0
    age = OutboxStats(1, 1, {}, time.time() - 5.25678, 0, {}).as_dict()["oldest_age_s"]
    assert isinstance(age, float) and 5.257 <= age < 6 and age == round(age, 3)  # to the millisecond
    box.close()


def test_each_kind_of_damage_gets_its_reason(tmp_path: Path) -> None:
    from edgeface.outbox.rows import check_row, crc32

    good = payload("r1")
    ok = ("r1", "t", 1, crc32(good), good)
    assert check_row(*ok, None) == (good, None)
    cases = {
        "missing id": ("", "t", 1, crc32(good), good),
        "missing topic": ("r1", "", 1, crc32(good), good),
        "unknown priority 3": ("r1", "t", 3, crc32(good), good),
        "payload is str, not bytes": ("r1", "t", 1, crc32(good), good.decode()),
        "payload fails its CRC-32": ("r1", "t", 1, crc32(good) ^ 1, good),
        "payload is not JSON": ("r1", "t", 1, crc32(b"{"), b"{"),
        "payload is not a JSON object": ("r1", "t", 1, crc32(b"[]"), b"[]"),
        "payload id 'r2' differs from the row id": ("r1", "t", 1, crc32(payload("r2")), payload("r2")),
    }
    for reason, row in cases.items():
        got, why = check_row(*row, None)
        assert got is None and why is not None and why.startswith(reason), (reason, why)
    for rid, topic, prio in ((None, "t", 1), ("r1", None, 1), ("r1", "t", -1), ("r1", "t", None)):
        assert check_row(rid, topic, prio, crc32(good), good, None)[0] is None
    for prio in (0, 2):
        assert check_row("r1", "t", prio, crc32(good), good, None) == (good, None)


def test_sqlite_errors_say_what_to_do(tmp_path: Path) -> None:
    from edgeface.errors import OutboxCorrupt
    from edgeface.outbox.rows import translate

    path = tmp_path / "o.sqlite3"
    coded = sqlite3.OperationalError("disk I/O trouble")
    coded.sqlite_errorcode = 13  # type: ignore[attr-defined]  # SQLITE_FULL, whatever the text says
    for e in (coded, sqlite3.OperationalError("database or disk is full")):
        full = translate(e, path, "storing a result")
        assert isinstance(full, OutboxDiskFull)
        assert str(full).startswith(f"outbox {path}: the disk is full while storing a result (")
        assert f"Free space on {tmp_path}, or move outbox.path to a larger disk." in str(full)
    for text in ("database disk image is malformed", "file is not a database"):
        bad = translate(sqlite3.DatabaseError(text), path, "reading")
        assert isinstance(bad, OutboxCorrupt) and f"outbox {path} is damaged ({text}) while reading." in str(bad)
        assert (
            "move the file aside for inspection (sqlite3 .recover can salvage rows) and start again with a new "
            "outbox." in str(bad)
        )
    other = translate(sqlite3.OperationalError("attempt to write a readonly database"), path, "storing a result")
    assert type(other) is OutboxError
    assert str(other) == (
        f"outbox {path}: attempt to write a readonly database while storing a result; "
        "check the storage and its permissions."
    )
    with pytest.raises(OutboxCorrupt, match=rf"^outbox {path} is damaged .* while opening the database. Stop edgeface"):
        path.write_bytes(b"this is not a database" * 100)
        Outbox(path)


def test_priorities_of_decisions(tmp_path: Path) -> None:
    assert [Priority.for_decision(d) for d in ("match", "no_match", "refused")] == [0, 1, 2]
    with pytest.raises(ValueError, match="unknown decision 'maybe': expected match, no_match or refused"):
        Priority.for_decision("maybe")


def test_every_operation_says_what_it_was_doing_when_sqlite_fails(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", ttl_s=60)
    rid = put(box, Priority.MATCH)
    con = sqlite3.connect(box.path)
    con.executescript("DROP TABLE pending; DROP TABLE totals; DROP TABLE quarantine; DROP TABLE counters;")
    con.close()
    calls = {
        "storing a result": lambda: put(box, Priority.MATCH),
        "reading pending results": lambda: box.fetch(5),
        "deleting acknowledged results": lambda: box.ack([rid]),
        "deleting expired results": lambda: box.purge_expired(),
        "quarantining a damaged row": lambda: box.quarantine(1, "damaged"),
        "reading its statistics": box.stats,
        "counting pending results": box.pending_count,
        "reading quarantined rows": box.quarantined,
        "looking up pending results": lambda: box.pending_among([rid]),
        "listing pending results": box.pending_ids,
    }
    for doing, call in calls.items():
        with pytest.raises(OutboxError, match=rf"o\.sqlite3: no such table: \w+ while {doing}; check the storage"):
            call()
    assert box._conn().execute("PRAGMA synchronous").fetchone()[0] == 2  # the failed ack put it back
    box.close()


def test_an_outbox_whose_tables_cannot_be_created_says_so(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE pending_order (x)")  # takes the name of the outbox's index
    con.commit()
    con.close()
    with pytest.raises(OutboxError, match=rf"^outbox {path}: .*pending_order.* while creating its tables"):
        Outbox(path)
    con = sqlite3.connect(path)  # rolled back: nothing half-made, the format still unset
    assert con.execute("PRAGMA user_version").fetchone()[0] == 0
    assert [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["pending_order"]
    con.close()


def test_a_database_that_cannot_use_wal_is_refused_with_where_to_put_it() -> None:
    # SQLite keeps an in-memory database's journal in memory: no WAL, as on storage without shared memory
    with pytest.raises(
        OutboxError,
        match=r"outbox :memory:: SQLite refused WAL mode \(got 'memory'\); put outbox.path on a local filesystem "
        r"\(not NFS or a FAT card without locking\)\.",
    ):
        Outbox(":memory:")


def test_opening_an_outbox_while_another_process_writes_does_not_wait_for_it(tmp_path: Path) -> None:
    """A current outbox is opened without writing (no schema work), so `edgeface outbox status` or a restarted
    stage opens it while the daemon holds the write lock."""
    path = tmp_path / "o.sqlite3"
    with Outbox(path) as box:
        rid = put(box, Priority.MATCH)
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # holds the write lock, as a put in another process does
    try:
        with Outbox(path) as box:
            assert box.pending_ids() == [rid] and [r.id for r in box.fetch(5)] == [rid]
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_drops_expiries_and_quarantines_are_logged_with_the_row(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.INFO, logger="edgeface.outbox")

    def events() -> list[tuple[str, str, dict[str, object]]]:
        out = [(r.levelname, r.getMessage(), dict(getattr(r, "edgeface_fields", {}))) for r in caplog.records]
        caplog.clear()
        return out

    box = Outbox(tmp_path / "o.sqlite3", max_results=2, ttl_s=10)
    old = put(box, Priority.REFUSED, now=0.0)
    put(box, Priority.MATCH, now=100.0)
    events()
    put(box, Priority.MATCH, now=100.0)
    assert events() == [
        (
            "WARNING",
            "outbox.dropped",
            {"id": old, "priority": "refused", "reason": "overflow", "policy": "drop_oldest_no_match"},
        )
    ]
    with pytest.raises(OutboxFull):  # a no-match may not displace a match: refused, nothing dropped or logged
        put(box, Priority.NO_MATCH, now=100.0)
    assert [e[1] for e in events()] == []
    box.close()
    box = Outbox(tmp_path / "t.sqlite3", ttl_s=10)
    late = put(box, Priority.NO_MATCH, now=0.0)
    events()
    assert box.purge_expired(now=20.0) == 1
    assert events() == [("WARNING", "outbox.expired", {"id": late, "priority": "no_match"})]
    bad = put(box, Priority.MATCH)
    seq = box.fetch(1)[0].seq
    events()
    box.quarantine(seq, "payload fails its CRC-32 (changed on disk)")
    assert events() == [
        (
            "ERROR",
            "outbox.quarantined",
            {
                "id": bad,
                "reason": "payload fails its CRC-32 (changed on disk)",
                "path": str(box.path),
                "hint": "the row is kept in the quarantine table; see `edgeface outbox status`",
            },
        )
    ]
    box.quarantine(seq, "again")  # already moved: nothing to log
    assert events() == []
    box.close()


def test_room_is_made_exactly_when_the_new_row_would_not_fit(tmp_path: Path) -> None:
    one = len(payload(new_id()))
    box = Outbox(tmp_path / "r.sqlite3", max_bytes=2 * one, on_full="refuse")
    ids = [put(box, Priority.NO_MATCH), put(box, Priority.NO_MATCH)]  # exactly the byte limit: no refusal
    assert box.pending_ids() == ids
    box.close()
    box = Outbox(tmp_path / "d.sqlite3", max_bytes=2 * one - 1)
    put(box, Priority.NO_MATCH)
    b = put(box, Priority.NO_MATCH)  # one byte over: the older one goes
    assert box.pending_ids() == [b] and box.stats().counters["dropped_overflow"] == 1
    box.close()
    box = Outbox(tmp_path / "e.sqlite3", max_bytes=3 * one)
    ids = [put(box, Priority.NO_MATCH) for _ in range(3)]
    m = put(box, Priority.MATCH)  # needs exactly one row's bytes: exactly one row goes
    assert box.pending_ids() == [m, *ids[1:]]
    box.close()
    path = tmp_path / "f.sqlite3"
    with Outbox(path) as box:
        ids = [put(box, Priority.NO_MATCH) for _ in range(5)]
    with Outbox(path, max_results=2) as box:  # the limit lowered under a fuller outbox: 4 rows must go
        m = put(box, Priority.MATCH)
        assert box.pending_ids() == [m, ids[4]] and box.stats().counters["dropped_overflow"] == 4
        n = new_id()
        box.put_many([(m, "t", payload(m), Priority.MATCH), (n, "t", payload(n), Priority.NO_MATCH)])
        assert box.pending_ids() == [m, n]  # the pending one skipped, the next one still stored
    with Outbox(tmp_path / "g.sqlite3", max_results=2) as box:
        ids = [put(box, Priority.NO_MATCH) for _ in range(2)]
        x, y = new_id(), new_id()
        box.put_many([(x, "t", payload(x), Priority.MATCH), (y, "t", payload(y), Priority.MATCH)])
        assert box.pending_ids() == [x, y] and box.stats().counters["dropped_overflow"] == 2


def test_fetch_without_a_time_uses_the_clock_and_reports_each_row_as_stored(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", ttl_s=3600, match_ttl_s=3600)
    now = time.time()
    m = put(box, Priority.MATCH, now=now)
    n = put(box, Priority.NO_MATCH, now=now - 7200)  # expired an hour ago
    rows = box.fetch(5)
    assert [r.id for r in rows] == [m] and n in box.pending_ids()
    assert rows[0].priority is Priority.MATCH and rows[0].created_at == now
    assert rows[0].topic == "edgeface/v1/devices/u/results" and json.loads(rows[0].payload)["id"] == m
    assert box.purge_expired() == 1 and box.pending_ids() == [m]  # the clock, too
    box.close()
