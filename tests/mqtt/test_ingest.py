"""The ingest: malformed payloads are counted, logged and kept aside, never a crash; ids are stored once;
several workers share one subscription without duplicate rows."""

from __future__ import annotations

import json
import logging
import random
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from edgeface.bench.broker import LocalBroker
from edgeface.bench.mqttload import outbox_item, sample_result, wait_for
from edgeface.mqtt import Publisher, topics
from edgeface.outbox import Outbox

from .conftest import fill, plain_settings


def raw_publisher(broker: LocalBroker) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="raw", protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    return c


def test_malformed_payloads_are_counted_logged_and_never_fatal(broker: LocalBroker, start_ingest: Any,
                                                               caplog: pytest.LogCaptureFixture) -> None:
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


def test_two_workers_on_the_shared_subscription_store_each_result_once(broker: LocalBroker, start_ingest: Any,
                                                                       tmp_path: Any) -> None:
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
