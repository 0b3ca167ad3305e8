"""The ingest: malformed payloads are counted, logged and kept aside, never a crash; ids are stored once;
several workers share one subscription without duplicate rows."""

from __future__ import annotations

import json
import logging
import random
import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from edgeface.errors import EdgefaceError, PayloadError
from edgeface.mqtt import Ingest, Publisher, ResultStore, payloads, topics
from edgeface.mqtt.link import LinkSettings
from edgeface.outbox import Outbox
from edgeface.testing.broker import LocalBroker
from edgeface.testing.mqttload import outbox_item, sample_result, wait_for

from .conftest import fill, mtls_settings, plain_settings


def raw_publisher(broker: LocalBroker) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="raw", protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    return c


def test_malformed_payloads_are_counted_logged_and_never_fatal(
    broker: LocalBroker, start_ingest: Any, caplog: pytest.LogCaptureFixture
) -> None:
    ingest = start_ingest(plain_settings(broker.port, "ingest-1"), max_payload_bytes=65536)
    rng = random.Random(1)
    good = sample_result("unit-a", rng)
    wrong_types = json.loads(json.dumps(good))
    wrong_types["id"] = "01890a5d-ac96-774b-bcce-b302099a8057"
    wrong_types["quality"]["score"] = "very good"
    wrong_types["candidates"] = {"identity_id": 5}
    other_device = sample_result("unit-b", rng)
    match_below = json.loads(json.dumps(good))
    match_below["decision"] = "match"
    match_below["candidates"] = [{"identity_id": "p", "score": 0.1}]
    bad: dict[str, bytes] = {
        "not_json": b"hello, world",
        "not_utf8": b"\xc3\x28\xa0\xa1",
        "schema": json.dumps({"schema_version": 1, "id": "x"}).encode(),
        "schema_types": json.dumps(wrong_types).encode(),
        "too_large": json.dumps({**good, "source": "x" * 100_000}).encode(),
        "nan": json.dumps({**good, "threshold": float("nan")}).encode(),
        "nested": b"[" * 5000 + b"]" * 5000,
        "empty": b"",
        "device_mismatch": json.dumps(other_device).encode(),
        "rules": json.dumps(match_below).encode(),
    }
    assert b"NaN" in bad["nan"]
    c = raw_publisher(broker)
    caplog.set_level(logging.WARNING, logger="edgeface")
    for data in bad.values():
        c.publish(topics.results_topic("unit-a"), data, qos=1).wait_for_publish(5)
    c.publish(topics.results_topic("unit-a"), json.dumps(good).encode(), qos=1).wait_for_publish(5)
    c.publish(topics.results_topic("unit-a"), json.dumps(good).encode(), qos=1).wait_for_publish(5)
    assert ingest.wait_count(1)
    assert wait_for(lambda: ingest.worker.stats.received == len(bad) + 2, 10)
    c.loop_stop()
    c.disconnect()
    s = ingest.worker.stats
    assert ingest.store.ids() == [good["id"]]
    assert s.stored == 1 and s.duplicates == 1
    assert s.malformed_total == len(bad)
    # Plain text, NaN, empty, and (before Python 3.13, whose parser takes any depth) the deep nesting.
    assert s.malformed["not_json"] + s.malformed["schema"] == 6 and s.malformed["not_json"] >= 3
    assert s.malformed["not_utf8"] == 1 and s.malformed["too_large"] == 1 and s.malformed["rules"] == 1
    assert s.malformed["device_mismatch"] == 1
    assert len(ingest.store.rejected()) == len(bad)
    assert sum(1 for r in caplog.records if r.getMessage() == "ingest.malformed") == len(bad)
    assert ingest.worker.error is None and ingest.worker.stats.connected


def test_two_workers_on_the_shared_subscription_store_each_result_once(
    broker: LocalBroker, start_ingest: Any, tmp_path: Any
) -> None:
    db = tmp_path / "shared.sqlite3"
    w1 = start_ingest(plain_settings(broker.port, "ingest-1"), db=db)
    w2 = start_ingest(plain_settings(broker.port, "ingest-2"), db=db)
    box = Outbox(tmp_path / "o.sqlite3")
    ids = fill(box, "unit-a", 400, random.Random(7))
    pub = Publisher(box, plain_settings(broker.port, "unit-a"), "unit-a", reconnect_min_s=0.05)
    pub.start()
    try:
        assert pub.wait_drained(60)
        assert w1.wait_count(400)
    finally:
        pub.stop()
        box.close()
    assert sorted(w1.store.ids()) == sorted(ids)
    assert w1.worker.stats.stored > 0 and w2.worker.stats.stored > 0  # the load was shared
    assert w1.worker.stats.stored + w2.worker.stats.stored == 400


def test_payload_round_trip_keeps_every_field(broker: LocalBroker, start_ingest: Any, tmp_path: Any) -> None:
    ingest = start_ingest(plain_settings(broker.port, "ingest-1"))
    box = Outbox(tmp_path / "o.sqlite3")
    doc = sample_result("unit-a", random.Random(11))
    box.put(*outbox_item(doc))
    pub = Publisher(box, plain_settings(broker.port, "unit-a"), "unit-a", reconnect_min_s=0.05)
    pub.start()
    try:
        assert pub.wait_drained(30) and ingest.wait_count(1)
    finally:
        pub.stop()
        box.close()
    stored = json.loads(ingest.store.payloads()[doc["id"]])
    assert stored == json.loads(outbox_item(doc)[2])


def _publish(c: mqtt.Client, topic: str, data: bytes, *, retain: bool = False) -> None:
    c.publish(topic, data, qos=1, retain=retain).wait_for_publish(5)


def test_poison_that_matches_the_old_patterns_is_rejected_and_the_worker_goes_on(
    broker: LocalBroker, start_ingest: Any
) -> None:
    """The security review's messages: each used to kill the worker (ValueError, OverflowError) or store a
    second row (an id with a trailing newline); a retained status did it on every subscribe."""
    rng = random.Random(21)
    c = raw_publisher(broker)
    poison_status = payloads.status_payload(device_id="unit-evil", state="online", reason="heartbeat")
    poison_status["ts"] = "2025-02-30T00:00:00Z"
    _publish(c, topics.status_topic("unit-evil"), json.dumps(poison_status).encode(), retain=True)
    ingest = start_ingest(plain_settings(broker.port, "ingest-1"))
    good = sample_result("unit-a", rng)
    dup = sample_result("unit-evil", rng)
    poison = []
    for field, value in [
        ("captured_at", "2025-13-45T99:99:99Z"),
        ("gallery_version", 10**20),
        ("id", good["id"] + "\n"),
        ("id", dup["id"] + "\n"),
    ]:
        doc = sample_result("unit-evil", rng)
        doc[field] = value
        poison.append(doc)
    surrogate = sample_result("unit-evil", rng)
    surrogate["candidates"][0]["identity_id"] = "\ud800"
    nul = sample_result("unit-evil", rng)
    nul["model_id"] = "m\x00"
    for doc in [*poison, surrogate, nul]:
        _publish(c, topics.results_topic("unit-evil"), json.dumps(doc).encode())
    for doc in (good, dup):
        _publish(c, topics.results_topic(doc["device_id"]), json.dumps(doc).encode())
    assert ingest.wait_count(2)
    assert wait_for(lambda: len(ingest.store.rejected()) == 7, 10)
    assert sorted(ingest.store.ids()) == sorted([good["id"], dup["id"]])
    kinds = sorted(r["kind"] for r in ingest.store.rejected())
    assert kinds == ["schema"] * 5 + ["text"] * 2
    status = [r for r in ingest.store.rejected() if r["topic"] == topics.status_topic("unit-evil")]
    assert len(status) == 1 and "not a real time" in status[0]["error"]
    # A new session gets the retained poison again: rejected again, and the worker still runs.
    ingest.worker.stop()
    again = start_ingest(plain_settings(broker.port, "ingest-1"), db=ingest.store.path)  # a restart
    assert wait_for(lambda: len(again.store.rejected()) == 8, 10)
    late = sample_result("unit-a", rng)
    _publish(c, topics.results_topic("unit-a"), json.dumps(late).encode())
    assert again.wait_count(3)
    assert again.worker.error is None and again.worker.stats.connected
    c.loop_stop()
    c.disconnect()


def test_the_device_refuses_to_queue_what_the_ingest_would_reject() -> None:
    doc = sample_result("unit-a", random.Random(5))
    doc["captured_at"] = "2025-02-30T00:00:00Z"
    with pytest.raises(PayloadError, match="not a real time"):
        payloads.encode_result(doc)
    doc = sample_result("unit-a", random.Random(5))
    doc["candidates"][0]["identity_id"] = "a\x00b"
    with pytest.raises(PayloadError, match="cannot be stored") as e:
        payloads.encode_result(doc)
    assert e.value.kind == "text"


def test_a_row_the_database_refuses_is_rejected_alone(broker: LocalBroker, start_ingest: Any, tmp_path: Any) -> None:
    """A rule in the database itself (here a trigger) refuses one row: the batch is written row by row,
    that row goes to the rejected table with the database's reason, the others are stored."""
    db = tmp_path / "rules.sqlite3"
    store = ResultStore(db)
    store._db.execute(
        "CREATE TRIGGER refuse_unit_x BEFORE INSERT ON results WHEN NEW.device_id = 'unit-x' "
        "BEGIN SELECT RAISE(ABORT, 'unit-x is barred'); END"
    )
    store.close()
    ingest = start_ingest(plain_settings(broker.port, "ingest-1"), db=db, batch=50, flush_ms=500)
    rng = random.Random(8)
    docs = (
        [sample_result("unit-a", rng) for _ in range(5)]
        + [sample_result("unit-x", rng)]
        + [sample_result("unit-b", rng) for _ in range(5)]
    )
    c = raw_publisher(broker)
    for d in docs:
        c.publish(topics.results_topic(d["device_id"]), payloads.encode_result(d), qos=1)
    assert ingest.wait_count(10)
    assert wait_for(lambda: len(ingest.store.rejected()) == 1, 10)
    assert sorted(ingest.store.ids()) == sorted(d["id"] for d in docs if d["device_id"] != "unit-x")
    r = ingest.store.rejected()[0]
    assert r["kind"] == "store" and "unit-x is barred" in r["error"] and r["topic"].endswith("/unit-x/results")
    assert ingest.worker.error is None
    c.loop_stop()
    c.disconnect()


def test_a_full_database_acknowledges_nothing_and_stores_everything_once_it_has_room(
    broker: LocalBroker, start_ingest: Any
) -> None:
    """SQLite's 'database or disk is full' is the store's trouble, not the message's: nothing is rejected
    or acknowledged, the batch is retried with backoff, and every result is stored once there is room."""
    ingest = start_ingest(plain_settings(broker.port, "ingest-1"))
    store = ingest.store
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")
    rng = random.Random(9)
    docs = [sample_result("unit-a", rng) for _ in range(30)]
    c = raw_publisher(broker)
    for d in docs:
        c.publish(topics.results_topic("unit-a"), payloads.encode_result(d), qos=1)
    assert wait_for(lambda: ingest.worker.stats.store_errors >= 2, 20)
    assert store.count() == 0 and store.rejected() == []
    store._db.execute("PRAGMA max_page_count = 1073741823")
    assert ingest.wait_count(30)
    assert sorted(store.ids()) == sorted(d["id"] for d in docs)
    assert store.rejected() == [] and ingest.worker.error is None
    c.loop_stop()
    c.disconnect()


# In-process checks of the worker's decisions: real paho messages, a real SQLite store, no broker. They
# pin what each message becomes (row, status, nothing, or a rejection with its kind, reason, topic and
# bytes) and how the counters follow, which the broker tests above only see in aggregate.


def _message(topic: str, payload: bytes, *, qos: int = 1, mid: int = 1) -> mqtt.MQTTMessage:
    m = mqtt.MQTTMessage(mid=mid, topic=topic.encode())
    m.payload = payload
    m.qos = qos
    return m


def _offline_worker(store: ResultStore, **kw: Any) -> Ingest:
    return Ingest(store, plain_settings(1, "ingest-offline"), **kw)


def _rejected_rows(store: ResultStore) -> list[tuple[str, str, str, int, bytes]]:
    with store._lock:
        return list(store._db.execute("SELECT topic, kind, error, size, head FROM rejected ORDER BY rowid"))


def test_each_message_becomes_a_row_a_status_nothing_or_a_rejection_with_its_reason(tmp_path: Any) -> None:
    store = ResultStore(tmp_path / "r.sqlite3")
    rng = random.Random(31)
    good = sample_result("unit-a", rng)
    other = sample_result("unit-b", rng)
    good_bytes = payloads.encode_result(good)
    online = payloads.status_payload(device_id="unit-a", state="online", reason="heartbeat")
    big = sample_result("unit-a", rng)
    big["source"] = "cam0" + "x" * 200
    limit = max(len(good_bytes), len(payloads.encode_result(other)))
    assert len(payloads.encode_result(big)) > limit
    w = _offline_worker(store, max_payload_bytes=limit)
    messages = [
        (topics.results_topic("unit-a"), good_bytes),  # stored
        (topics.results_topic("unit-a"), good_bytes),  # a redelivery: a duplicate, stored once
        (topics.results_topic("unit-a"), payloads.encode_result(big)),  # over the worker's limit
        (topics.results_topic("unit-a"), payloads.encode_result(other)),  # unit-b's result on unit-a's topic
        (topics.status_topic("unit-a"), payloads.encode(online, "status")),  # a status
        (topics.status_topic("unit-a"), b""),  # a cleared retained status: nothing to record
        (topics.status_topic("unit-b"), payloads.encode(online, "status")),  # unit-a's status on unit-b's topic
        ("edgeface/v1/devices/unit-a/other", b"{}"),  # a kind of message the ingest does not take
        ("somewhere/else", b"{}"),
        (topics.results_topic("unit-a"), b"{not json"),
    ]
    for i, (topic, data) in enumerate(messages):
        w._on_message(None, None, _message(topic, data, mid=i + 1))  # type: ignore[arg-type]
    assert [p.mid for p in w._pending] == list(range(1, len(messages) + 1))  # arrival order, every one kept
    assert all(p.qos == 1 for p in w._pending)
    w._write(w._pending)
    assert all(p.done for p in w._pending if p.action is not None)
    assert store.ids() == [good["id"]]
    assert json.loads(store.payloads()[good["id"]]) == good
    assert store.device("unit-a") == online and store.device("unit-b") is None
    s = w.stats
    assert (s.received, s.stored, s.duplicates, s.statuses) == (5, 1, 1, 1)
    assert dict(s.malformed) == {"too_large": 1, "device_mismatch": 2, "topic": 2, "not_json": 1}
    assert s.malformed_total == 6 and s.store_errors == 0
    rows = _rejected_rows(store)
    assert [(r[0], r[1]) for r in rows] == [
        (topics.results_topic("unit-a"), "too_large"),
        (topics.results_topic("unit-a"), "device_mismatch"),
        (topics.status_topic("unit-b"), "device_mismatch"),
        ("edgeface/v1/devices/unit-a/other", "topic"),
        ("somewhere/else", "topic"),
        (topics.results_topic("unit-a"), "not_json"),
    ]
    errors = [r[2] for r in rows]
    assert "over the limit" in errors[0]
    assert "'unit-b'" in errors[1] and "'unit-a'" in errors[1] and "differs from the topic" in errors[1]
    assert errors[2] == "status device_id differs from its topic"
    assert "unexpected topic" in errors[3] and "unit-a/other" in errors[3]
    assert "unexpected topic" in errors[4] and "somewhere/else" in errors[4]
    assert "not JSON" in errors[5]
    # the bytes as received, and their size
    assert rows[1][4] == payloads.encode_result(other)[:1024] and rows[1][3] == len(payloads.encode_result(other))
    assert rows[5][4] == b"{not json" and rows[5][3] == 9
    # the limit is the worker's own: with a higher one the same message is stored
    store2 = ResultStore(tmp_path / "r2.sqlite3")
    w2 = _offline_worker(store2, max_payload_bytes=len(payloads.encode_result(big)))
    w2._on_message(None, None, _message(topics.results_topic("unit-a"), payloads.encode_result(big)))  # type: ignore[arg-type]
    w2._write(w2._pending)
    assert store2.ids() == [big["id"]] and w2.stats.malformed_total == 0
    store2.close()
    store.close()


def test_a_status_over_its_own_limit_is_rejected_though_a_result_may_be_that_big(tmp_path: Any) -> None:
    store = ResultStore(tmp_path / "r.sqlite3")
    w = _offline_worker(store, max_payload_bytes=10**6)
    online = payloads.status_payload(device_id="unit-a", state="online", reason="heartbeat")
    huge = json.dumps({**online, "pad": " " * 70_000}).encode()
    w._on_message(None, None, _message(topics.status_topic("unit-a"), huge))  # type: ignore[arg-type]
    w._write(w._pending)
    assert store.device("unit-a") is None and dict(w.stats.malformed) == {"too_large": 1}
    assert "65536" in _rejected_rows(store)[0][2]
    store.close()


def test_qos0_messages_are_written_and_never_acknowledged_and_a_cleared_status_is_dropped(tmp_path: Any) -> None:
    store = ResultStore(tmp_path / "r.sqlite3")
    w = _offline_worker(store)
    doc = sample_result("unit-a", random.Random(32))
    w._on_message(None, None, _message(topics.status_topic("unit-a"), b"", qos=0, mid=0))  # type: ignore[arg-type]
    assert w._pending == []  # nothing to write and nothing to acknowledge
    w._on_message(None, None, _message(topics.status_topic("unit-a"), b"", qos=1, mid=4))  # type: ignore[arg-type]
    w._on_message(None, None, _message(topics.results_topic("unit-a"), payloads.encode_result(doc), qos=0, mid=0))  # type: ignore[arg-type]
    assert [(p.mid, p.qos, p.action is None) for p in w._pending] == [(4, 1, True), (0, 0, False)]
    w._write(w._pending)
    assert store.ids() == [doc["id"]] and store.device("unit-a") is None and w.stats.malformed_total == 0
    store.close()


def test_an_unexpected_failure_in_the_checks_rejects_the_message_naming_the_error(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in the checks (here: the decoder raising something no one expected) must not stop the worker:
    the message is rejected with kind 'error' and the exception in its reason."""
    store = ResultStore(tmp_path / "r.sqlite3")
    w = _offline_worker(store)

    def broken(*a: Any, **k: Any) -> Any:
        raise LookupError("checker bug")

    monkeypatch.setattr(payloads, "decode", broken)
    w._on_message(None, None, _message(topics.results_topic("unit-a"), b"{}", mid=9))  # type: ignore[arg-type]
    monkeypatch.undo()
    w._write(w._pending)
    assert dict(w.stats.malformed) == {"error": 1}
    rows = _rejected_rows(store)
    assert [(r[0], r[1], r[2], r[4]) for r in rows] == [
        (topics.results_topic("unit-a"), "error", "LookupError: checker bug", b"{}")
    ]
    store.close()


def test_a_status_the_database_refuses_is_rejected_alone_and_results_beside_it_are_stored(tmp_path: Any) -> None:
    db = tmp_path / "rules.sqlite3"
    store = ResultStore(db)
    store._db.execute(
        "CREATE TRIGGER refuse_evil BEFORE INSERT ON devices WHEN NEW.device_id = 'unit-x' "
        "BEGIN SELECT RAISE(ABORT, 'unit-x is barred'); END"
    )
    w = _offline_worker(store)
    rng = random.Random(33)
    docs = [sample_result("unit-a", rng) for _ in range(3)]
    bad = payloads.status_payload(device_id="unit-x", state="online", reason="heartbeat")
    ok = payloads.status_payload(device_id="unit-a", state="online", reason="heartbeat")
    w._on_message(None, None, _message(topics.results_topic("unit-a"), payloads.encode_result(docs[0]), mid=1))  # type: ignore[arg-type]
    w._on_message(None, None, _message(topics.status_topic("unit-x"), payloads.encode(bad, "status"), mid=2))  # type: ignore[arg-type]
    w._on_message(None, None, _message(topics.status_topic("unit-a"), payloads.encode(ok, "status"), mid=3))  # type: ignore[arg-type]
    for i, d in enumerate(docs[1:]):
        w._on_message(None, None, _message(topics.results_topic("unit-a"), payloads.encode_result(d), mid=4 + i))  # type: ignore[arg-type]
    ok_b = payloads.status_payload(device_id="unit-b", state="online", reason="heartbeat")
    w._on_message(None, None, _message(topics.status_topic("unit-b"), payloads.encode(ok_b, "status"), mid=8))  # type: ignore[arg-type]
    w._on_message(None, None, _message(topics.status_topic("unit-x"), payloads.encode(bad, "status"), mid=9))  # type: ignore[arg-type]
    w._write(w._pending)  # the refused status becomes a rejection, written in the same pass
    assert all(p.done for p in w._pending)
    assert sorted(store.ids()) == sorted(d["id"] for d in docs) and w.stats.stored == 3
    assert store.device("unit-a") == ok and store.device("unit-b") == ok_b and w.stats.statuses == 2
    assert dict(w.stats.malformed) == {"store": 2}
    rows = _rejected_rows(store)[:1]
    assert len(_rejected_rows(store)) == 2
    topic, kind, error, _, head = rows[0]
    assert (topic, kind) == (topics.status_topic("unit-x"), "store")
    assert "the database refused the status" in error and "unit-x is barred" in error and "IntegrityError" in error
    assert json.loads(head) == bad
    store.close()


def test_a_result_the_database_refuses_keeps_its_payload_and_names_the_database_error(tmp_path: Any) -> None:
    db = tmp_path / "rules.sqlite3"
    store = ResultStore(db)
    store._db.execute(
        "CREATE TRIGGER refuse_unit_x BEFORE INSERT ON results WHEN NEW.device_id = 'unit-x' "
        "BEGIN SELECT RAISE(ABORT, 'unit-x is barred'); END"
    )
    w = _offline_worker(store)
    rng = random.Random(34)
    docs = [sample_result("unit-a", rng), sample_result("unit-x", rng), sample_result("unit-a", rng)]
    for i, d in enumerate(docs):
        w._on_message(None, None, _message(topics.results_topic(d["device_id"]), payloads.encode_result(d), mid=i + 1))  # type: ignore[arg-type]
    w._write(w._pending)  # the batch fails, then row by row: the refused row becomes a rejection
    assert all(p.done for p in w._pending)
    assert sorted(store.ids()) == sorted([docs[0]["id"], docs[2]["id"]]) and w.stats.stored == 2
    assert dict(w.stats.malformed) == {"store": 1}
    (topic, kind, error, size, head), *more = _rejected_rows(store)
    assert more == [] and (topic, kind) == (topics.results_topic("unit-x"), "store")
    assert error.startswith("the database refused the row: IntegrityError") and "unit-x is barred" in error
    assert json.loads(head) == docs[1] and size == len(head)
    store.close()


def test_a_retried_batch_writes_nothing_twice(tmp_path: Any) -> None:
    store = ResultStore(tmp_path / "r.sqlite3")
    w = _offline_worker(store)
    rng = random.Random(35)
    docs = [sample_result("unit-a", rng) for _ in range(3)]
    for i, d in enumerate(docs):
        w._on_message(None, None, _message(topics.results_topic("unit-a"), payloads.encode_result(d), mid=i + 1))  # type: ignore[arg-type]
    w._on_message(None, None, _message(topics.results_topic("unit-a"), b"nope", mid=9))  # type: ignore[arg-type]
    online = payloads.status_payload(device_id="unit-a", state="online", reason="heartbeat")
    w._on_message(None, None, _message(topics.status_topic("unit-a"), payloads.encode(online, "status"), mid=10))  # type: ignore[arg-type]
    w._write(w._pending)
    w._write(w._pending)  # as after a failure later in the same flush
    assert (w.stats.stored, w.stats.duplicates, w.stats.statuses) == (3, 0, 1)
    assert len(store.rejected()) == 1
    for k, d in enumerate(docs[:2]):  # redeliveries in two later batches: the counter adds up
        w._pending.clear()
        w._on_message(None, None, _message(topics.results_topic("unit-a"), payloads.encode_result(d), mid=20 + k))  # type: ignore[arg-type]
        w._write(w._pending)
    assert (w.stats.stored, w.stats.duplicates) == (3, 2) and store.count() == 3
    store.close()


def test_a_failed_flush_acknowledges_nothing_counts_the_error_and_waits_before_the_retry(
    broker: LocalBroker, tmp_path: Any
) -> None:
    """The store's failure (SQLite full): the batch stays, nothing is acknowledged, store_errors counts
    each failed flush and the next try is put off; a successful flush acknowledges and empties it."""
    store = ResultStore(tmp_path / "r.sqlite3")
    w = Ingest(store, plain_settings(broker.port, "ingest-flush"), reconnect_max_s=30.0)
    from edgeface.mqtt.link import Backoff, Connection

    w._conn = Connection(w.settings, Backoff(0.05, 0.5), on_up=w._on_up, on_down=w._on_down, manual_ack=True)
    try:
        rng = random.Random(36)
        docs = [sample_result("unit-a", rng) for _ in range(30)]
        for i, d in enumerate(docs):
            w._on_message(None, None, _message(topics.results_topic("unit-a"), payloads.encode_result(d), mid=i + 1))  # type: ignore[arg-type]
        pages = store._db.execute("PRAGMA page_count").fetchone()[0]
        store._db.execute(f"PRAGMA max_page_count = {pages}")
        before = time.monotonic()
        w._flush()
        assert w.stats.store_errors == 1 and len(w._pending) == 30 and store.count() == 0
        assert before + 0.025 <= w._retry_at <= time.monotonic() + 0.05  # the first delay is 25-50 ms
        before = time.monotonic()
        w._flush()
        assert w.stats.store_errors == 2 and w._retry_at >= before + 0.05  # then 50-100 ms: it grows
        store._db.execute("PRAGMA max_page_count = 1073741823")
        w._flush()
        assert w._pending == [] and store.count() == 30 and w.stats.store_errors == 2 and w.stats.stored == 30
        assert w._store_backoff.failures == 0  # the next failure starts from the shortest delay again
    finally:
        w._conn.close()
        store.close()


def test_the_worker_takes_its_settings_from_the_configuration(tmp_path: Any) -> None:
    """What `edgeface ingest` and the server's workers get: every [ingest] and [mqtt] figure, and a client id
    that is the one given, else ingest.client_id, else ingest-<host name> (persistent sessions need it stable)."""
    import socket

    from edgeface.config import load_config

    store = ResultStore(tmp_path / "r.sqlite3")
    sets = {
        "mqtt.host": "broker.example",
        "mqtt.port": "18883",
        "mqtt.tls": "false",
        "mqtt.max_payload_bytes": "4096",
        "mqtt.reconnect_min_s": "0.25",
        "mqtt.reconnect_max_s": "7",
        "ingest.group": "workers-b",
        "ingest.batch": "17",
        "ingest.flush_ms": "250",
    }
    cfg = load_config(None, env={}, overrides=[f"{k}={v}" for k, v in sets.items()])
    w = Ingest.from_config(cfg.mqtt, cfg.ingest, store)
    assert w.store is store
    assert (w.settings.host, w.settings.port, w.settings.tls) == ("broker.example", 18883, False)
    assert w.settings.client_id == f"ingest-{socket.gethostname()}"
    assert w.results_filter == "$share/workers-b/edgeface/v1/devices/+/results"
    assert (w.batch, w.flush_s, w.max_payload_bytes) == (17, 0.25, 4096)
    assert (w._backoff.min_s, w._backoff.max_s) == (0.25, 7.0)
    assert w._store_backoff.max_s == 7.0 and w.subscribe_status
    named = load_config(None, env={}, overrides=["mqtt.host=h", "mqtt.tls=false", "ingest.client_id=ingest-7"])
    assert Ingest.from_config(named.mqtt, named.ingest, store).settings.client_id == "ingest-7"
    assert Ingest.from_config(named.mqtt, named.ingest, store, client_id="cli-9").settings.client_id == "cli-9"
    store.close()


def test_library_defaults_match_the_configuration_defaults(tmp_path: Any) -> None:
    """Ingest(store, settings) used as a library behaves as the configured service does by default."""
    from edgeface.config import load_config

    cfg = load_config(None, env={}, overrides=[])
    store = ResultStore(tmp_path / "r.sqlite3")
    w = Ingest(store, plain_settings(1, "ingest-lib"))
    assert w.results_filter == topics.shared_results_filter(cfg.ingest.group)
    assert (w.batch, w.flush_s, w.max_payload_bytes) == (cfg.ingest.batch, cfg.ingest.flush_ms / 1000, 131072)
    assert cfg.mqtt.max_payload_bytes == 131072 and w.subscribe_status is True
    assert w._store_backoff.min_s == 0.05  # a busy database is tried again soon
    assert (w._backoff.min_s, w._backoff.max_s) == (1.0, 60.0)
    assert w.error is None and w._conn is None and w._thread is None
    store.close()


def test_the_worker_needs_mqtt5_and_says_so(tmp_path: Any) -> None:
    store = ResultStore(tmp_path / "r.sqlite3")
    with pytest.raises(EdgefaceError) as e:
        Ingest(store, plain_settings(1, "ingest-311", protocol="mqtt311"))
    assert str(e.value) == 'ingest needs MQTT 5 (shared subscriptions); set mqtt.protocol = "mqtt5"'
    assert Ingest(store, plain_settings(1, "ingest-5", protocol="mqtt5")).settings.protocol == "mqtt5"
    store.close()


def test_counters_as_dict_name_every_figure(tmp_path: Any) -> None:
    """The figures `edgeface ingest --stats-json` writes and the logs carry."""
    from edgeface.mqtt.ingest import IngestStats

    s = IngestStats(received=9, stored=5, duplicates=1, statuses=2, store_errors=3, connected=True, subscribed=False)
    s.malformed["schema"] += 2
    s.malformed["too_large"] += 1
    d = s.as_dict()
    assert d == {
        "received": 9,
        "stored": 5,
        "duplicates": 1,
        "malformed": {"schema": 2, "too_large": 1},
        "malformed_total": 3,
        "statuses": 2,
        "store_errors": 3,
        "connected": True,
        "subscribed": False,
    }
    assert json.loads(json.dumps(d)) == d  # plain JSON (a Counter is not written as one)


def test_stop_returns_once_the_worker_thread_has_ended_and_the_thread_never_holds_the_process(
    broker: LocalBroker, tmp_path: Any
) -> None:
    store = ResultStore(tmp_path / "r.sqlite3")
    w = Ingest(store, plain_settings(broker.port, "ingest-stop"), reconnect_min_s=0.05, reconnect_max_s=0.5)
    w.start()
    try:
        assert w._thread is not None and w._thread.daemon  # a forgotten worker must not keep a process alive
        assert wait_for(lambda: w.stats.connected and w.stats.subscribed, 20)
    finally:
        w.stop()
    assert not w._thread.is_alive() and w.error is None
    store.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the crash is the point
def test_a_worker_that_cannot_start_records_why(tmp_path: Any) -> None:
    """A crash of the worker thread is kept in ``error`` for its owner (the server restarts the worker)."""
    store = ResultStore(tmp_path / "r.sqlite3")
    missing = tmp_path / "no-such-ca.pem"
    w = Ingest(store, LinkSettings(host="127.0.0.1", port=1, client_id="ingest-x", ca_file=missing))
    w.start()
    assert w._thread is not None
    w._thread.join(20)
    assert w.error is not None and "TLS files cannot be used" in str(w.error)
    store.close()


def test_a_subscription_the_broker_refuses_leaves_the_worker_unsubscribed(
    tls_broker: LocalBroker, pki: dict[str, Any], tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A unit's certificate may not read the results: the worker connects, its subscription is refused,
    and it says so (subscribed stays false, which the server's health shows) instead of waiting silently."""
    caplog.set_level(logging.ERROR, logger="edgeface")
    store = ResultStore(tmp_path / "r.sqlite3")
    w = Ingest(store, mtls_settings(tls_broker, pki, "unit-b"), reconnect_min_s=0.05, subscribe_status=False)
    w.start()
    try:
        assert wait_for(lambda: any(r.getMessage() == "ingest.subscribe_refused" for r in caplog.records), 20)
        assert w.stats.connected and not w.stats.subscribed
    finally:
        w.stop()
    store.close()


def test_a_full_batch_is_committed_without_waiting_for_the_flush_interval(
    broker: LocalBroker, start_ingest: Any
) -> None:
    """`ingest.batch` results are written and acknowledged as soon as they are there (here the interval is
    a minute, longer than the wait)."""
    ingest = start_ingest(plain_settings(broker.port, "ingest-1"), batch=5, flush_ms=60_000)
    rng = random.Random(37)
    docs = [sample_result("unit-a", rng) for _ in range(5)]
    c = raw_publisher(broker)
    for d in docs:
        c.publish(topics.results_topic("unit-a"), payloads.encode_result(d), qos=1)
    assert ingest.wait_count(5, timeout=20)
    c.loop_stop()
    c.disconnect()


def test_retries_of_a_failing_database_back_off(broker: LocalBroker, start_ingest: Any) -> None:
    """While the database fails, the batch is tried again after growing delays, not in a tight loop. After
    failure n the wait is at least half of min(0.05 * 2**(n-1), reconnect_max_s = 0.5) seconds: the test
    checks the sum of those lower bounds over five waits, which a slow machine can only exceed."""
    ingest = start_ingest(plain_settings(broker.port, "ingest-1"))
    store = ingest.store
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")
    rng = random.Random(38)
    c = raw_publisher(broker)
    for _ in range(30):
        c.publish(topics.results_topic("unit-a"), payloads.encode_result(sample_result("unit-a", rng)), qos=1)
    assert wait_for(lambda: ingest.worker.stats.store_errors >= 1, 20)
    seen, since = ingest.worker.stats.store_errors, time.monotonic()  # failure seen+1 comes after this
    assert wait_for(lambda: ingest.worker.stats.store_errors >= seen + 6, 30)
    least = sum(min(0.05 * 2 ** (n - 1), 0.5) / 2 for n in range(seen + 1, seen + 6))
    assert time.monotonic() - since >= least >= 0.85
    store._db.execute("PRAGMA max_page_count = 1073741823")
    assert ingest.wait_count(30)
    c.loop_stop()
    c.disconnect()


def test_what_was_not_committed_is_delivered_again_to_the_worker_that_takes_over(
    broker: LocalBroker, start_ingest: Any, tmp_path: Any
) -> None:
    """PUBACK only after the commit: a worker that stops while its database refuses every write has
    acknowledged nothing, so the broker delivers the same results again to the next worker of its session."""
    db = tmp_path / "results.sqlite3"
    ingest = start_ingest(plain_settings(broker.port, "ingest-1"), db=db)
    store = ingest.store
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")  # this connection's limit only
    rng = random.Random(39)
    docs = [sample_result("unit-a", rng) for _ in range(12)]
    c = raw_publisher(broker)
    for d in docs:
        c.publish(topics.results_topic("unit-a"), payloads.encode_result(d), qos=1).wait_for_publish(5)
    assert wait_for(lambda: ingest.worker.stats.received == 12 and ingest.worker.stats.store_errors >= 1, 20)
    ingest.worker.stop()
    assert store.count() == 0
    again = start_ingest(plain_settings(broker.port, "ingest-1"), db=db)  # its own connection: no limit
    assert again.wait_count(12)
    assert sorted(again.store.ids()) == sorted(d["id"] for d in docs)
    c.loop_stop()
    c.disconnect()


def test_the_worker_rides_out_a_broker_restart(broker: LocalBroker, start_ingest: Any) -> None:
    ingest = start_ingest(plain_settings(broker.port, "ingest-1"))
    broker.restart()
    conn = ingest.worker._conn
    assert conn is not None
    assert wait_for(lambda: conn.connects >= 2 and ingest.worker.stats.connected and ingest.worker.stats.subscribed, 30)
    doc = sample_result("unit-a", random.Random(40))
    c = raw_publisher(broker)
    c.publish(topics.results_topic("unit-a"), payloads.encode_result(doc), qos=1).wait_for_publish(5)
    assert ingest.wait_count(1) and ingest.worker.error is None
    c.loop_stop()
    c.disconnect()


def test_a_lost_connection_forgets_the_unacknowledged_batch_and_allows_a_retry_at_once(tmp_path: Any) -> None:
    """The broker delivers unacknowledged messages again after a reconnect: the worker drops its copies (so
    nothing is stored twice), says it is no longer subscribed, and a retry delay from a failed flush no
    longer holds back the new batch."""
    store = ResultStore(tmp_path / "r.sqlite3")
    w = _offline_worker(store)
    doc = sample_result("unit-a", random.Random(42))
    w._on_message(None, None, _message(topics.results_topic("unit-a"), payloads.encode_result(doc)))  # type: ignore[arg-type]
    w.stats.subscribed = True
    w._retry_at = time.monotonic() + 100
    w._on_down("network: lost")
    assert w._pending == [] and w.stats.subscribed is False
    assert w._retry_at <= time.monotonic()
    store.close()


def test_the_database_failing_during_the_row_by_row_pass_rejects_nothing_more_and_is_retried(tmp_path: Any) -> None:
    """Row by row (after a refused row), the database itself fails (full): that is no reason to reject the
    row it failed on; the flush fails as a whole, and once there is room every row is stored and only the
    refused ones (two of them, each counted) are rejected."""
    import sqlite3

    store = ResultStore(tmp_path / "rules.sqlite3")
    store._db.execute(
        "CREATE TRIGGER refuse_unit_x BEFORE INSERT ON results WHEN NEW.device_id = 'unit-x' "
        "BEGIN SELECT RAISE(ABORT, 'unit-x is barred'); END"
    )
    w = _offline_worker(store)
    rng = random.Random(43)
    docs = [sample_result("unit-x", rng), sample_result("unit-x", rng)] + [
        sample_result("unit-a", rng) for _ in range(30)
    ]
    for i, d in enumerate(docs):
        w._on_message(None, None, _message(topics.results_topic(d["device_id"]), payloads.encode_result(d), mid=i + 1))  # type: ignore[arg-type]
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(sqlite3.OperationalError, match="full"):
        w._write(w._pending)
    assert store.rejected() == []
    store._db.execute("PRAGMA max_page_count = 1073741823")
    w._write(w._pending)
    assert sorted(store.ids()) == sorted(d["id"] for d in docs[2:])
    assert [r["kind"] for r in store.rejected()] == ["store", "store"] and w.stats.malformed["store"] == 2
    store.close()


def test_a_status_the_database_cannot_take_now_is_written_later_not_rejected(tmp_path: Any) -> None:
    """The database's own trouble (here it refuses every write) while a status is written: the flush fails,
    and the status is stored on the retry instead of being rejected as if it were bad."""
    import sqlite3

    store = ResultStore(tmp_path / "r.sqlite3")
    w = _offline_worker(store)
    online = payloads.status_payload(device_id="unit-a", state="online", reason="heartbeat")
    w._on_message(None, None, _message(topics.status_topic("unit-a"), payloads.encode(online, "status")))  # type: ignore[arg-type]
    store._db.execute("PRAGMA query_only = 1")
    with pytest.raises(sqlite3.OperationalError):
        w._write(w._pending)
    store._db.execute("PRAGMA query_only = 0")
    w._write(w._pending)
    assert store.device("unit-a") == online and store.rejected() == []
    assert w.stats.statuses == 1 and w.stats.malformed_total == 0
    store.close()


def test_stored_results_are_acknowledged_so_the_next_worker_of_the_session_does_not_get_them_again(
    broker: LocalBroker, start_ingest: Any, tmp_path: Any
) -> None:
    """The other half of PUBACK-after-commit: what was committed is acknowledged, so a worker that takes over
    the session (same client id) is not handed the same results again."""
    db = tmp_path / "results.sqlite3"
    ingest = start_ingest(plain_settings(broker.port, "ingest-1"), db=db)
    rng = random.Random(44)
    docs = [sample_result("unit-a", rng) for _ in range(10)]
    c = raw_publisher(broker)
    for d in docs:
        c.publish(topics.results_topic("unit-a"), payloads.encode_result(d), qos=1).wait_for_publish(5)
    assert ingest.wait_count(10)
    marker = sample_result("unit-a", rng)  # stored by a later flush: the loop has sent the acknowledgements
    c.publish(topics.results_topic("unit-a"), payloads.encode_result(marker), qos=1).wait_for_publish(5)
    assert ingest.wait_count(11)
    ingest.worker.stop()
    again = start_ingest(plain_settings(broker.port, "ingest-1"), db=db)
    last = sample_result("unit-a", rng)  # after anything the session would resend
    c.publish(topics.results_topic("unit-a"), payloads.encode_result(last), qos=1).wait_for_publish(5)
    assert again.wait_count(12)
    assert again.worker.stats.received <= 2, again.worker.stats  # the last one, and at most the marker again
    c.loop_stop()
    c.disconnect()


def test_an_unexpected_topic_is_named_in_the_reason_cut_to_200_characters(tmp_path: Any) -> None:
    store = ResultStore(tmp_path / "r.sqlite3")
    w = _offline_worker(store)
    topic = "edgeface/v1/devices/unit-a/" + "y" * 300
    w._on_message(None, None, _message(topic, b"{}"))  # type: ignore[arg-type]
    w._write(w._pending)
    ((stored_topic, kind, error, _, _),) = _rejected_rows(store)
    assert (stored_topic, kind) == (topic, "topic") and error == f"unexpected topic {topic[:200]!r}"
    store.close()
