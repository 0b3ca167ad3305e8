"""The ingest: malformed payloads are counted, logged and kept aside, never a crash; ids are stored once;
several workers share one subscription without duplicate rows."""

from __future__ import annotations

import json
import logging
import random
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from edgeface.errors import PayloadError
from edgeface.mqtt import Publisher, ResultStore, payloads, topics
from edgeface.outbox import Outbox
from edgeface.testing.broker import LocalBroker
from edgeface.testing.mqttload import outbox_item, sample_result, wait_for

from .conftest import fill, plain_settings


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
