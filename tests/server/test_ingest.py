"""Server ingest workers on a real mosquitto: results stored once across two workers on the shared
subscription and redeliveries, device status into the fleet view, malformed messages kept aside."""

from __future__ import annotations

import json
import random
import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from edgeface.cli.main import cli
from edgeface.mqtt import Ingest, payloads, timestamps, topics
from edgeface.mqtt.link import LinkSettings
from edgeface.server.ingest import DbResultStore
from edgeface.server.tables import devices, rejected, results
from edgeface.testing.mqttload import sample_result, wait_for

from .conftest import Browser


def _publisher(port: int) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-pub-{time.monotonic_ns()}", protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", port, 30)
    c.loop_start()
    return c


def _worker(db: Any, port: int, cid: str) -> Ingest:
    w = Ingest(
        DbResultStore(db),
        LinkSettings(host="127.0.0.1", port=port, client_id=cid, tls=False),
        reconnect_min_s=0.05,
        reconnect_max_s=0.5,
    )
    w.start()
    assert wait_for(lambda: w.stats.connected and w.stats.subscribed, 20)
    return w


def test_two_workers_store_each_result_once(db: Any, broker: Any) -> None:
    w1, w2 = _worker(db, broker.port, "ingest-t1"), _worker(db, broker.port, "ingest-t2")
    pub = _publisher(broker.port)
    try:
        rng = random.Random(1)
        docs = [sample_result(f"unit-{i % 3}", rng) for i in range(600)]
        for d in docs + docs[:100]:  # the last 100 again: a redelivery after a lost PUBACK
            pub.publish(topics.results_topic(d["device_id"]), payloads.encode_result(d), qos=1).wait_for_publish(10)
        store = DbResultStore(db)
        assert wait_for(lambda: store.count() >= 600, 30)
        assert wait_for(lambda: w1.stats.received + w2.stats.received >= 700, 30)
        time.sleep(0.3)
        with db.read() as conn:
            stored = set(conn.execute(select(results.c.id)).scalars())
        # results.id is the primary key, so a row stored twice cannot happen; what can go wrong is a result
        # missing, or one that nobody sent: the stored ids are exactly the 600 sent
        assert stored == {d["id"] for d in docs}
        assert w1.stats.received > 0 and w2.stats.received > 0  # the shared subscription spread the load
        assert w1.stats.duplicates + w2.stats.duplicates == 100
    finally:
        pub.loop_stop()
        w1.stop()
        w2.stop()


def test_status_and_last_will_reach_the_fleet_view(db: Any, broker: Any, as_admin: Browser) -> None:
    w = _worker(db, broker.port, "ingest-t3")
    pub = _publisher(broker.port)
    try:
        online = payloads.status_payload(
            device_id="unit-7",
            state="online",
            reason="heartbeat",
            uptime_s=12,
            software_version="0.1.0",
            gallery_version=3,
            model_id="dlib-resnet-v1-int8",
            outbox={"pending": 42, "bytes": 4096, "matches": 2, "oldest_age_s": 5.0},
        )
        pub.publish(
            topics.status_topic("unit-7"), payloads.encode(online, "status"), qos=1, retain=True
        ).wait_for_publish(5)
        assert wait_for(lambda: _state(db, "unit-7") == "online", 20)
        page = as_admin.get("/fleet").get_data(as_text=True)
        for text in ("unit-7", "online", "42", "0.1.0", "dlib-resnet-v1-int8"):
            assert text in page
        will = payloads.status_payload(
            device_id="unit-7", state="offline", reason="connection_lost", ts=time.time() - 3600
        )  # a last will carries its connection's start time
        pub.publish(
            topics.status_topic("unit-7"), payloads.encode(will, "status"), qos=1, retain=True
        ).wait_for_publish(5)
        assert wait_for(lambda: _state(db, "unit-7") == "offline", 20)
        assert "connection_lost" in as_admin.get("/fleet").get_data(as_text=True)
    finally:
        pub.loop_stop()
        w.stop()


def _state(db: Any, device: str) -> str | None:
    with db.read() as conn:
        return conn.execute(select(devices.c.state).where(devices.c.device_id == device)).scalar()


def test_malformed_messages_kept_aside(db: Any, broker: Any) -> None:
    w = _worker(db, broker.port, "ingest-t4")
    pub = _publisher(broker.port)
    try:
        good = sample_result("unit-a", random.Random(2))
        wrong_device = dict(good, id=sample_result("unit-a", random.Random(3))["id"])
        pub.publish(topics.results_topic("unit-a"), b"{not json", qos=1).wait_for_publish(5)
        pub.publish(topics.results_topic("unit-b"), payloads.encode_result(wrong_device), qos=1).wait_for_publish(5)
        pub.publish(topics.results_topic("unit-a"), payloads.encode_result(good), qos=1).wait_for_publish(5)
        assert wait_for(lambda: DbResultStore(db).count() == 1, 20)
        assert wait_for(lambda: w.stats.malformed_total == 2, 20)

        def kinds() -> list[str]:
            with db.read() as conn:
                return sorted(r.kind for r in conn.execute(select(rejected.c.kind)))

        # counted when read, written at the worker's next flush: wait for the rows, not for the count
        assert wait_for(lambda: kinds() == ["device_mismatch", "not_json"], 20), kinds()
    finally:
        pub.loop_stop()
        w.stop()


def test_rejected_table_is_bounded(db: Any) -> None:
    store = DbResultStore(db, rejected_keep=5)
    for i in range(12):
        store.reject("t", "schema", f"e{i}", b"x" * 2000)
    with db.read() as conn:
        rows = conn.execute(select(rejected.c.error, rejected.c.head)).all()
    assert [r.error for r in rows] == [f"e{i}" for i in range(7, 12)] and all(len(r.head) == 1024 for r in rows)


def test_bench_ingest_small(tmp_path: Any) -> None:
    out = tmp_path / "bench.json"
    r = CliRunner().invoke(
        cli,
        [
            "bench",
            "ingest",
            "--results",
            "1500",
            "--workers",
            "1,2",
            "--out",
            str(out),
            "--workdir",
            str(tmp_path / "wd"),
        ],
    )
    assert r.exit_code == 0, r.output
    runs = json.loads(out.read_text())["runs"]
    assert [x["workers"] for x in runs] == [1, 2]
    # duplicate_rows counts rows of a primary-keyed table (never non-zero); what can go wrong is an id
    # published and not stored (missing), or stored and never published (unexpected)
    assert all(x["missing"] == 0 and x["unexpected"] == 0 and x["results_per_s"] > 0 for x in runs), runs


# DbResultStore and the worker factory in-process, on the server's own database: what each column holds,
# what the counters say, and which settings a worker gets.


def _ingested(outcome: str) -> float:
    from edgeface.server.metrics import INGESTED

    for family in INGESTED.collect():
        for s in family.samples:
            if s.name.endswith("_total") and s.labels.get("outcome") == outcome:
                return float(s.value)
    return 0.0


def test_results_are_stored_column_by_column_once_and_counted(db: Any) -> None:
    store = DbResultStore(db)
    rng = random.Random(41)
    docs = [sample_result("unit-a", rng, match_share=1.0), sample_result("unit-b", rng, match_share=0.0)]
    before = {o: _ingested(o) for o in ("stored", "duplicate")}
    assert store.add(docs, received_at=1234.5) == (2, 0)
    assert store.add([docs[0], sample_result("unit-b", rng)], received_at=1300.0) == (1, 1)
    assert store.add_rows([]) == (0, 0)
    assert (_ingested("stored") - before["stored"], _ingested("duplicate") - before["duplicate"]) == (3, 1)
    with db.read() as conn:
        row = conn.execute(select(results).where(results.c.id == docs[0]["id"])).mappings().one()
        devs = {r.device_id: r for r in conn.execute(select(devices))}
    top = docs[0]["candidates"][0]
    assert row["device_id"] == "unit-a" and row["captured_at"] == docs[0]["captured_at"]
    assert row["captured_ts"] == timestamps.parse_timestamp(docs[0]["captured_at"])
    assert (row["decision"], row["top_identity"]) == ("match", top["identity_id"])
    assert row["top_score"] == pytest.approx(top["score"])
    assert (row["gallery_version"], row["model_id"]) == (docs[0]["gallery_version"], docs[0]["model_id"])
    assert json.loads(row["payload"]) == docs[0]
    assert row["received_at"] == 1234.5  # the first arrival's time: a redelivery changes nothing
    assert row["review_status"] == "pending"
    assert devs["unit-a"].last_result_at == devs["unit-b"].last_result_at == 1300.0  # the latest, even a redelivery
    assert not devs["unit-a"].revoked and not devs["unit-b"].revoked
    t0 = time.time()
    store.add([sample_result("unit-c", rng)])  # no time given: now
    with db.read() as conn:
        seen = conn.execute(select(devices.c.last_result_at).where(devices.c.device_id == "unit-c")).scalar_one()
    assert t0 <= seen <= time.time()


def test_a_status_is_stored_whole_and_the_next_one_replaces_it(db: Any) -> None:
    store = DbResultStore(db)
    first = payloads.status_payload(device_id="unit-9", state="online", reason="heartbeat", ts=1_700_000_000.0)
    t0 = time.time()
    store.set_status(first)
    with db.read() as conn:
        row = conn.execute(select(devices).where(devices.c.device_id == "unit-9")).mappings().one()
    assert row["state"] == "online" and not row["revoked"]
    assert row["status"] == json.dumps(first, separators=(",", ":"))  # compact, as received
    assert row["status_ts"] == timestamps.parse_timestamp(first["ts"])
    assert t0 <= row["updated_at"] <= time.time()
    will = payloads.status_payload(device_id="unit-9", state="offline", reason="connection_lost", ts=1_600_000_000.0)
    store.set_status(will)  # older by its own clock, newer by arrival: it wins
    with db.read() as conn:
        row = conn.execute(select(devices).where(devices.c.device_id == "unit-9")).mappings().one()
    assert row["state"] == "offline" and json.loads(row["status"]) == will
    assert row["status_ts"] == timestamps.parse_timestamp(will["ts"])


def test_a_rejected_message_is_kept_cut_to_its_columns(db: Any) -> None:
    store = DbResultStore(db)
    before = _ingested("rejected")
    t0 = time.time()
    store.reject("t/" + "x" * 700, "k" * 40, "why " * 200, b"\x00" * 3000)
    assert _ingested("rejected") - before == 1
    with db.read() as conn:
        r = conn.execute(select(rejected)).mappings().one()
    assert len(r["topic"]) == 512 and r["topic"].startswith("t/x")
    assert r["kind"] == "k" * 32
    assert len(r["error"]) == 500 and r["error"].startswith("why why")
    assert r["size"] == 3000 and r["head"] == b"\x00" * 1024
    assert t0 <= r["received_at"] <= time.time()


def test_the_rejected_table_keeps_the_newest_thousand_by_default(db: Any) -> None:
    store = DbResultStore(db)
    for i in range(1002):
        store.reject("t", "schema", f"e{i}", b"x")
    with db.read() as conn:
        errors = list(conn.execute(select(rejected.c.error).order_by(rejected.c.id)).scalars())
    assert len(errors) == 1000 and errors[0] == "e2" and errors[-1] == "e1001"


def test_workers_get_stable_distinct_client_ids_and_the_servers_settings(tmp_path: Any) -> None:
    import socket

    from edgeface.server.db import Database
    from edgeface.server.ingest import make_worker, worker_client_id

    from .conftest import server_config

    named = server_config(tmp_path, **{"mqtt.host": "127.0.0.1", "mqtt.tls": "false", "ingest.client_id": "ing"})
    assert [worker_client_id(named, i) for i in (0, 1, 2)] == ["ing", "ing-1", "ing-2"]
    assert worker_client_id(named) == "ing"
    unnamed = server_config(tmp_path, **{"mqtt.host": "127.0.0.1", "mqtt.tls": "false"})
    host = f"ingest-{socket.gethostname()}"
    assert [worker_client_id(unnamed, i) for i in (0, 3)] == [host, f"{host}-3"]
    cfg = server_config(
        tmp_path,
        **{
            "mqtt.host": "127.0.0.1",
            "mqtt.tls": "false",
            "ingest.client_id": "ing",
            "ingest.group": "grp-2",
            "server.rejected_keep": "7",
        },
    )
    db = Database(cfg.server.database_url)
    try:
        w = make_worker(cfg, db)
        assert w.settings.client_id == "ing" and w.results_filter == "$share/grp-2/edgeface/v1/devices/+/results"
        assert isinstance(w.store, DbResultStore) and w.store.db is db and w.store.rejected_keep == 7
        assert make_worker(cfg, db, 2).settings.client_id == "ing-2"
    finally:
        db.dispose()
