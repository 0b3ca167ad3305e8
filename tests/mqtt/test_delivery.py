"""Delivery on a real broker: acknowledged before deleted, recovery after restarts and kill -9,
priorities on the wire, status and last will, commands, MQTT 3.1.1 fallback."""

from __future__ import annotations

import json
import logging
import random
import time
import types
from pathlib import Path
from typing import Any

import jsonschema
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from edgeface.errors import OutboxError
from edgeface.mqtt import Publisher, payloads, topics
from edgeface.mqtt import publisher as publisher_module
from edgeface.mqtt.validate import load_schema
from edgeface.outbox import Outbox, Priority
from edgeface.testing.broker import LocalBroker
from edgeface.testing.mqttload import Child, outbox_item, sample_result, wait_for, write_toml
from edgeface.testing.proxy import TcpProxy

from .conftest import fill, plain_settings

UNIT = "unit-a"


def publisher(box: Outbox, port: int, **kw: Any) -> Publisher:
    settings_kw = {k: kw.pop(k) for k in ("protocol", "connect_timeout_s", "keepalive_s") if k in kw}
    kw.setdefault("reconnect_min_s", 0.05)
    kw.setdefault("reconnect_max_s", 0.3)
    return Publisher(box, plain_settings(port, UNIT, **settings_kw), UNIT, **kw)


class Recorder:
    """A plain paho subscriber that records what it receives, in order."""

    def __init__(self, port: int, *filters: str, client_id: str = "recorder") -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.on_message = lambda c, u, m: self.messages.append(m)
        self.subscribed = False
        self.client.on_subscribe = lambda *a: setattr(self, "subscribed", True)
        self.client.connect("127.0.0.1", port)
        for f in filters:
            self.client.subscribe(f, qos=1)
        self.client.loop_start()
        assert wait_for(lambda: self.subscribed, 10)

    def docs(self, topic_part: str = "") -> list[dict[str, Any]]:
        return [json.loads(m.payload) for m in list(self.messages) if topic_part in m.topic and m.payload]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_everything_is_delivered_once_and_deleted_after_acknowledgement(
    broker: LocalBroker, outbox: Outbox, start_ingest: Any, rng: random.Random
) -> None:
    ingest = start_ingest(plain_settings(broker.port, "ingest-1"))
    ids = fill(outbox, UNIT, 300, rng)
    pub = publisher(outbox, broker.port)
    pub.start()
    try:
        assert pub.wait_drained(60)
        assert ingest.wait_count(300)
    finally:
        pub.stop()
    assert sorted(ingest.store.ids()) == sorted(ids)
    s = outbox.stats()
    assert s.pending == 0 and s.counters["delivered"] == 300
    assert pub.stats.acked == 300 and pub.stats.refused_by_broker == 0


def test_rows_stay_in_the_outbox_until_the_acknowledgement_arrives(
    broker: LocalBroker, outbox: Outbox, start_ingest: Any, rng: random.Random
) -> None:
    ingest = start_ingest(plain_settings(broker.port, "ingest-1"))
    proxy = TcpProxy(broker.port)
    pub = publisher(outbox, proxy.port, inflight=50)
    pub.start()
    try:
        assert wait_for(lambda: pub.stats.connected, 10)
        proxy.stall("down")  # messages reach the broker; its PUBACKs do not reach the unit
        ids = fill(outbox, UNIT, 40, rng)
        pub.notify()
        assert ingest.wait_count(40), "the broker should have delivered them to the ingest"
        time.sleep(0.5)
        assert outbox.stats().pending == 40, "no PUBACK arrived, so nothing may leave the outbox"
        assert pub.stats.acked == 0
        proxy.cut()  # the link drops with the acknowledgements lost
        proxy.restore()
        assert pub.wait_drained(30)
        assert wait_for(lambda: ingest.worker.stats.duplicates >= 1, 10)
    finally:
        pub.stop()
        proxy.close()
    assert sorted(ingest.store.ids()) == sorted(ids)  # resent, stored once
    assert ingest.store.count() == 40


def test_results_wait_while_the_broker_is_down_and_flow_when_it_returns(
    tmp_path: Path, outbox: Outbox, start_ingest: Any, rng: random.Random
) -> None:
    broker = LocalBroker.plain(tmp_path / "late-broker")
    ids = fill(outbox, UNIT, 50, rng)
    pub = publisher(outbox, broker.port)
    pub.start()
    try:
        assert wait_for(lambda: pub.stats.connect_failures >= 2, 10)  # backing off
        assert outbox.stats().pending == 50
        broker.start()
        ingest = start_ingest(plain_settings(broker.port, "ingest-1"))
        assert pub.wait_drained(30)
        assert ingest.wait_count(50)
    finally:
        pub.stop()
        broker.kill()
    assert sorted(ingest.store.ids()) == sorted(ids)


def test_broker_restart_loses_nothing(
    broker: LocalBroker, outbox: Outbox, start_ingest: Any, rng: random.Random
) -> None:
    ingest = start_ingest(plain_settings(broker.port, "ingest-1"))
    pub = publisher(outbox, broker.port, inflight=20)
    pub.start()
    ids: list[str] = []
    try:
        for _ in range(3):
            ids += fill(outbox, UNIT, 200, rng)
            pub.notify()
            time.sleep(0.1)
            broker.restart()  # SIGTERM: sessions saved; shared subscription forgotten (Mosquitto 2.0)
        ids += fill(outbox, UNIT, 50, rng)
        assert pub.wait_drained(60)
        assert ingest.wait_count(len(ids), 60)
    finally:
        pub.stop()
    assert sorted(ingest.store.ids()) == sorted(ids)


def test_kill_9_of_the_publisher_process_mid_flight_loses_nothing(
    tmp_path: Path, broker: LocalBroker, start_ingest: Any, rng: random.Random
) -> None:
    ingest = start_ingest(plain_settings(broker.port, "ingest-1"))
    path = tmp_path / "unit.sqlite3"
    box = Outbox(path)
    ids = fill(box, UNIT, 4000, rng)
    cfg = write_toml(
        tmp_path / "unit.toml",
        {
            "device": {"id": UNIT},
            "outbox": {"path": str(path)},
            "mqtt": {
                "host": "127.0.0.1",
                "port": broker.port,
                "tls": False,
                "inflight": 20,
                "reconnect_min_s": 0.05,
                "reconnect_max_s": 0.3,
            },
        },
    )
    child = Child(["--config", str(cfg), "outbox", "drain"], tmp_path / "drain.log")
    child.start()
    try:
        assert wait_for(lambda: ingest.store.count() >= 100, 60), child.log_tail()
        child.kill()  # SIGKILL: no clean-up, messages in flight
        left = box.stats().pending
        assert 0 < left < 4000
        done = Child(
            ["--config", str(cfg), "outbox", "drain", "--until-empty", "--timeout", "120"], tmp_path / "drain2.log"
        )
        done.start()
        assert done.proc is not None and done.proc.wait(150) == 0, done.log_tail()
        assert ingest.wait_count(4000, 60)
    finally:
        child.kill()
        box.close()
    assert sorted(ingest.store.ids()) == sorted(ids)
    assert ingest.store.count() == 4000


def test_matches_are_sent_before_no_matches_and_refusals(
    broker: LocalBroker, outbox: Outbox, rng: random.Random
) -> None:
    rec = Recorder(broker.port, topics.RESULTS_FILTER)
    order = [Priority.NO_MATCH] * 5 + [Priority.REFUSED] * 2 + [Priority.MATCH] * 5
    for p in order:
        doc = sample_result(UNIT, rng, match_share=1.0 if p == Priority.MATCH else 0.0)
        if p == Priority.REFUSED:
            doc = payloads.result_payload(
                device_id=UNIT,
                decision="refused",
                candidates=[],
                threshold=None,
                quality=doc["quality"],
                gallery_version=1,
                model_id="m",
                refusal_reasons=["sharpness 3 < limit 15"],
            )
        outbox.put(*outbox_item(doc))
    pub = publisher(outbox, broker.port, inflight=1)
    pub.start()
    try:
        assert pub.wait_drained(30)
        assert wait_for(lambda: len(rec.docs("results")) == 12, 10)
    finally:
        pub.stop()
        rec.close()
    decisions = [d["decision"] for d in rec.docs("results")]
    assert decisions == ["match"] * 5 + ["no_match"] * 5 + ["refused"] * 2


def test_mqtt_3_1_1_fallback_delivers(
    broker: LocalBroker, outbox: Outbox, start_ingest: Any, rng: random.Random
) -> None:
    ingest = start_ingest(plain_settings(broker.port, "ingest-1"))
    ids = fill(outbox, UNIT, 100, rng)
    pub = publisher(outbox, broker.port, protocol="mqtt311")
    pub.start()
    try:
        assert pub.wait_drained(30)
        assert ingest.wait_count(100)
    finally:
        pub.stop()
    assert sorted(ingest.store.ids()) == sorted(ids)


def test_no_subscriber_keeps_results_queued_until_an_ingest_subscribes(
    broker: LocalBroker, outbox: Outbox, start_ingest: Any, rng: random.Random
) -> None:
    ids = fill(outbox, UNIT, 20, rng)
    pub = publisher(outbox, broker.port)
    pub.start()
    try:
        assert wait_for(lambda: pub.stats.no_subscribers >= 1, 10)
        assert outbox.stats().pending == 20  # the broker would have dropped them
        ingest = start_ingest(plain_settings(broker.port, "ingest-1"))
        assert pub.wait_drained(30)
        assert ingest.wait_count(20)
    finally:
        pub.stop()
    assert sorted(ingest.store.ids()) == sorted(ids)


def test_acknowledgement_timeout_reconnects_and_resends(
    broker: LocalBroker, outbox: Outbox, start_ingest: Any, rng: random.Random
) -> None:
    ingest = start_ingest(plain_settings(broker.port, "ingest-1"))
    proxy = TcpProxy(broker.port)
    pub = publisher(outbox, proxy.port, ack_timeout_s=1.0, connect_timeout_s=1.0)
    pub.start()
    try:
        assert wait_for(lambda: pub.stats.connected, 10)
        proxy.stall()  # a link that silently loses everything
        ids = fill(outbox, UNIT, 30, rng)
        pub.notify()
        assert wait_for(lambda: pub.stats.ack_timeouts >= 1, 20)
        assert outbox.stats().pending == 30
        proxy.restore()
        assert pub.wait_drained(30)
        assert ingest.wait_count(30)
    finally:
        pub.stop()
        proxy.close()
    assert sorted(ingest.store.ids()) == sorted(ids)


def test_retained_status_heartbeats_and_last_will(
    broker: LocalBroker, outbox: Outbox, start_ingest: Any, rng: random.Random
) -> None:
    ingest = start_ingest(plain_settings(broker.port, "ingest-1"))
    rec = Recorder(broker.port, topics.status_topic(UNIT))
    proxy = TcpProxy(broker.port)
    fill(outbox, UNIT, 5, rng)
    pub = publisher(outbox, proxy.port, heartbeat_s=1.0, gallery_version=lambda: 7, model_id="dlib-resnet-v1-int8")
    schema = jsonschema.Draft202012Validator(load_schema("status"))
    pub.start()
    try:
        assert wait_for(lambda: len([d for d in rec.docs() if d["state"] == "online"]) >= 2, 10)
        online = [d for d in rec.docs() if d["state"] == "online"]
        for d in online:
            schema.validate(d)
        last = online[-1]
        assert last["gallery_version"] == 7 and last["software_version"] and last["uptime_s"] >= 0
        assert "pending" in last["outbox"] and last["model_id"] == "dlib-resnet-v1-int8"
        proxy.cut()  # the unit vanishes: the broker publishes its last will
        assert wait_for(lambda: any(d["state"] == "offline" for d in rec.docs()), 10)
        will = [d for d in rec.docs() if d["state"] == "offline"][-1]
        schema.validate(will)
        assert will["reason"] == "connection_lost"
        proxy.restore()
        assert wait_for(lambda: rec.docs()[-1]["state"] == "online", 10)
    finally:
        pub.stop()
        proxy.close()
    assert wait_for(lambda: rec.docs()[-1]["state"] == "offline" and rec.docs()[-1]["reason"] == "shutdown", 10)
    rec.close()
    # Retained: a newcomer sees the last state; the ingest keeps it per device.
    late = Recorder(broker.port, topics.status_topic(UNIT), client_id="late")
    assert wait_for(lambda: late.docs() and late.docs()[-1]["state"] == "offline", 10)
    late.close()
    assert wait_for(lambda: (ingest.store.device(UNIT) or {}).get("state") == "offline", 10)


def test_commands_and_gallery_announcements_reach_their_callbacks_once(broker: LocalBroker, outbox: Outbox) -> None:
    got_commands: list[dict[str, Any]] = []
    got_announce: list[dict[str, Any]] = []
    server = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="server", protocol=mqtt.MQTTv5)
    server.connect("127.0.0.1", broker.port)
    server.loop_start()
    announce = payloads.encode(
        payloads.announce_payload(gallery_version=12, url="https://c/g/12", model_id="m"), "announce"
    )
    server.publish(topics.GALLERY_ANNOUNCE, announce, qos=1, retain=True).wait_for_publish(5)
    pub = publisher(outbox, broker.port, on_command=got_commands.append, on_announce=got_announce.append)
    pub.start()
    try:
        assert wait_for(lambda: got_announce, 10)  # retained: arrives on subscribe
        cmd = payloads.encode(payloads.command_payload("sync_gallery"), "command")
        for data in (cmd, cmd, b"{oops", json.dumps({"schema_version": 1, "command": "reboot"}).encode()):
            server.publish(topics.commands_topic(UNIT), data, qos=1).wait_for_publish(5)
        assert wait_for(lambda: pub.stats.malformed_messages >= 2, 10)
        time.sleep(0.3)
    finally:
        pub.stop()
        server.loop_stop()
        server.disconnect()
    assert [c["command"] for c in got_commands] == ["sync_gallery"]  # the redelivered copy is ignored
    assert got_announce[0]["gallery_version"] == 12
    assert pub.alive is False and pub.error is None


# -- the publisher's own rules, called in this process (the broker tests above reach them through paho) --


def _message(topic: str, data: bytes) -> mqtt.MQTTMessage:
    msg = mqtt.MQTTMessage(topic=topic.encode())
    msg.payload = data
    return msg


def _command(command: str, **kw: Any) -> bytes:
    return payloads.encode(payloads.command_payload(command, **kw), "command")


def test_commands_once_each_expired_ignored_malformed_counted_failing_handler_contained(
    outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    got: list[dict[str, Any]] = []
    announced: list[dict[str, Any]] = []
    fail = ["no"]

    def on_command(doc: dict[str, Any]) -> None:
        if doc["command"] == fail[0]:
            raise RuntimeError("handler broke")
        got.append(doc)

    caplog.set_level(logging.INFO, logger="edgeface.mqtt.publisher")
    pub = publisher(outbox, 1, on_command=on_command, on_announce=announced.append)
    ctopic = topics.commands_topic(UNIT)
    now = time.time()
    first = _command("sync_gallery")
    pub._on_message(None, None, _message(ctopic, first))  # type: ignore[arg-type]
    pub._on_message(None, None, _message(ctopic, first))  # type: ignore[arg-type]  # QoS 1 redelivery
    assert [d["id"] for d in got] == [json.loads(first)["id"]] and pub.stats.commands == 1
    expired = _command("capture", expires_at=now - 5)
    pub._on_message(None, None, _message(ctopic, expired))  # type: ignore[arg-type]
    assert len(got) == 1 and pub.stats.commands == 1  # expired: not acted on
    valid = _command("capture", expires_at=now + 60)
    pub._on_message(None, None, _message(ctopic, valid))  # type: ignore[arg-type]
    assert [d["command"] for d in got] == ["sync_gallery", "capture"] and pub.stats.commands == 2
    # A signed command goes to the unit's verifier every time: it judges replay and expiry and replies.
    signed = payloads.command_payload("lock", expires_at=now - 5)
    signed |= {"device_id": UNIT, "seq": 7, "signature": {"algorithm": "ed25519", "key_id": "0" * 16, "signature": "s"}}
    data = json.dumps(signed).encode()
    for _ in range(2):
        pub._on_message(None, None, _message(ctopic, data))  # type: ignore[arg-type]
    assert [d["command"] for d in got] == ["sync_gallery", "capture", "lock", "lock"] and pub.stats.commands == 4
    # Malformed: counted, never handed on (not JSON, over 64 KiB, not the schema).
    for bad in (b"{oops", b" " * (64 * 1024 + 1), json.dumps({"schema_version": 1, "command": "reboot"}).encode()):
        pub._on_message(None, None, _message(ctopic, bad))  # type: ignore[arg-type]
    assert pub.stats.malformed_messages == 3 and len(got) == 4
    kinds = [r.edgeface_fields["kind"] for r in caplog.records if r.getMessage() == "mqtt.malformed_message"]  # type: ignore[attr-defined]
    assert kinds == ["not_json", "too_large", "schema"]
    assert pub._on_message(None, None, _message(ctopic, b" " * (64 * 1024) + b"x")) is None  # type: ignore[arg-type,func-returns-value]
    assert pub.stats.malformed_messages == 4
    # A gallery announcement goes to its own callback; an announcement is not a command.
    ann = payloads.encode(payloads.announce_payload(gallery_version=5, url="https://c/g/5", model_id="m"), "announce")
    pub._on_message(None, None, _message(topics.GALLERY_ANNOUNCE, ann))  # type: ignore[arg-type]
    assert [d["gallery_version"] for d in announced] == [5] and pub.stats.commands == 4
    pub._on_message(None, None, _message(topics.GALLERY_ANNOUNCE, first))  # type: ignore[arg-type]
    assert pub.stats.malformed_messages == 5 and len(announced) == 1  # a command on the announce topic: malformed
    # A failing handler is counted and logged; the publisher goes on.
    fail[0] = "send_status"
    status = _command("send_status")
    pub._on_message(None, None, _message(ctopic, status))  # type: ignore[arg-type]
    pub._on_message(None, None, _message(ctopic, _command("send_status")))  # type: ignore[arg-type]
    assert pub.stats.handler_errors == 2 and pub.stats.commands == 6
    last = _command("sync_gallery")
    pub._on_message(None, None, _message(ctopic, last))  # type: ignore[arg-type]
    assert len(got) == 5
    # What the operator reads in the log, event by event.
    events = [(r.getMessage(), r.edgeface_fields) for r in caplog.records if r.name == "edgeface.mqtt.publisher"]  # type: ignore[attr-defined]
    for name, fields in events:
        if name == "mqtt.malformed_message":
            assert fields["topic"] in (ctopic, topics.GALLERY_ANNOUNCE) and 0 < len(fields["error"]) <= 300
            says = {"not_json": "is not JSON", "too_large": "over the limit", "schema": "does not follow"}
            assert says[fields["kind"]] in fields["error"], fields
            fields.pop("error")
    ids = [json.loads(c)["id"] for c in (first, expired, valid, status, last)]
    assert events == [
        ("mqtt.command", {"id": ids[0], "command": "sync_gallery"}),
        ("mqtt.command_expired", {"id": ids[1], "command": "capture"}),
        ("mqtt.command", {"id": ids[2], "command": "capture"}),
        ("mqtt.command", {"id": signed["id"], "command": "lock", "signed": True}),
        ("mqtt.command", {"id": signed["id"], "command": "lock", "signed": True}),
        ("mqtt.malformed_message", {"topic": ctopic, "kind": "not_json"}),
        ("mqtt.malformed_message", {"topic": ctopic, "kind": "too_large"}),
        ("mqtt.malformed_message", {"topic": ctopic, "kind": "schema"}),
        ("mqtt.malformed_message", {"topic": ctopic, "kind": "too_large"}),
        ("mqtt.gallery_announced", {"gallery_version": 5}),
        ("mqtt.malformed_message", {"topic": topics.GALLERY_ANNOUNCE, "kind": "schema"}),
        ("mqtt.command", {"id": ids[3], "command": "send_status"}),
        ("mqtt.handler_failed", {"kind": "command", "error": "handler broke"}),
        ("mqtt.command", {"id": events[13][1]["id"], "command": "send_status"}),
        ("mqtt.handler_failed", {"kind": "command", "error": "handler broke"}),
        ("mqtt.command", {"id": ids[4], "command": "sync_gallery"}),
    ]


def test_a_command_is_valid_up_to_the_instant_it_expires(outbox: Outbox, monkeypatch: pytest.MonkeyPatch) -> None:
    got: list[str] = []
    pub = publisher(outbox, 1, on_command=lambda d: got.append(d["command"]))
    expires = 1_900_000_000.5
    monkeypatch.setattr(publisher_module, "time", types.SimpleNamespace(time=lambda: expires, monotonic=time.monotonic))
    data = _command("capture", expires_at=expires)
    pub._on_message(None, None, _message(topics.commands_topic(UNIT), data))  # type: ignore[arg-type]
    assert got == ["capture"]  # at expires_at: still valid


def test_the_last_256_command_ids_are_remembered(outbox: Outbox) -> None:
    got: list[str] = []
    pub = publisher(outbox, 1, on_command=lambda d: got.append(d["id"]))
    ctopic = topics.commands_topic(UNIT)
    cmds = [_command("sync_gallery") for _ in range(257)]
    for c in cmds:
        pub._on_message(None, None, _message(ctopic, c))  # type: ignore[arg-type]
    assert len(got) == 257
    pub._on_message(None, None, _message(ctopic, cmds[1]))  # type: ignore[arg-type]  # still remembered
    pub._on_message(None, None, _message(ctopic, cmds[-1]))  # type: ignore[arg-type]
    assert len(got) == 257
    pub._on_message(None, None, _message(ctopic, cmds[0]))  # type: ignore[arg-type]  # the oldest was forgotten
    assert got[-1] == json.loads(cmds[0])["id"] and len(got) == 258


def test_status_documents_say_queue_link_and_versions(
    outbox: Outbox, rng: random.Random, caplog: pytest.LogCaptureFixture
) -> None:
    versions: list[int | None] = [9]

    def gallery_version() -> int | None:
        if versions[0] is None:
            raise OSError("gallery pointer unreadable")
        return versions[0]

    pub = publisher(outbox, 1, gallery_version=gallery_version, model_id="m1", software_version="9.9.9")
    for share in (1.0, 1.0, 0.0):
        outbox.put(*outbox_item(sample_result(UNIT, rng, match_share=share)))
    schema = jsonschema.Draft202012Validator(load_schema("status"))
    doc = pub._status("online", "heartbeat")
    schema.validate(doc)
    assert doc["state"] == "online" and doc["reason"] == "heartbeat" and doc["device_id"] == UNIT
    assert doc["gallery_version"] == 9 and doc["model_id"] == "m1" and doc["software_version"] == "9.9.9"
    assert doc["outbox"]["pending"] == 3 and doc["outbox"]["matches"] == 2
    assert doc["link"] == {"reconnects": 0, "protocol": "mqtt5"}  # never connected: no connected_since
    assert 0 <= doc["uptime_s"] < 60
    pub.stats.connects, pub.stats.connected_since = 3, 1_700_000_000.25
    doc = pub._status("online", "connected")
    assert doc["link"] == {"reconnects": 2, "protocol": "mqtt5", "connected_since": "2023-11-14T22:13:20.250Z"}
    versions[0] = None  # a failing callback: counted, the status still goes out
    caplog.set_level(logging.INFO, logger="edgeface.mqtt.publisher")
    doc = pub._status("online", "heartbeat")
    assert doc["gallery_version"] is None and pub.stats.handler_errors == 1
    pub._status("offline", "shutdown")
    assert pub.stats.handler_errors == 2
    events = [(r.getMessage(), r.edgeface_fields) for r in caplog.records if r.name == "edgeface.mqtt.publisher"]  # type: ignore[attr-defined]
    assert events == [("status.gallery_version_failed", {"error": "gallery pointer unreadable"})] * 2
    caplog.clear()
    outbox.close()  # the queue figures cannot be read: the status goes out without them, and says why
    doc = pub._status("online", "heartbeat")
    assert "outbox" not in doc and doc["link"]["reconnects"] == 2
    ((name, fields),) = [(r.getMessage(), r.edgeface_fields) for r in caplog.records if r.levelno == logging.WARNING]  # type: ignore[attr-defined]
    assert name == "outbox.stats_failed" and "closed" in fields["error"]
    versions[0] = 9
    off = pub._status("offline", "shutdown")
    schema.validate(off)
    assert off["state"] == "offline" and off["reason"] == "shutdown" and off["gallery_version"] == 9
    assert "outbox" not in off and "link" not in off  # the last will and goodbye: no queue or link figures
    topic, will = pub._will()
    assert topic == topics.status_topic(UNIT)
    assert {k: v for k, v in json.loads(will).items() if k in ("state", "reason")} == {
        "state": "offline",
        "reason": "connection_lost",
    }
    stats = pub.stats.as_dict()
    assert stats["connects"] == 3 and stats["handler_errors"] == 3 and stats["protocol"] == "mqtt5"
    stats["connects"] = 0
    assert pub.stats.connects == 3  # a copy


def test_send_status_publishes_one_heartbeat_at_once(broker: LocalBroker, outbox: Outbox) -> None:
    rec = Recorder(broker.port, topics.status_topic(UNIT))
    server = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="server", protocol=mqtt.MQTTv5)
    server.connect("127.0.0.1", broker.port)
    server.loop_start()
    pub = publisher(outbox, broker.port)  # heartbeat_s 60: no timed heartbeat during the test
    pub.start()
    try:
        assert wait_for(lambda: [d["reason"] for d in rec.docs()] == ["connected"], 10)
        for command in ("sync_gallery", "capture", "send_status"):
            server.publish(topics.commands_topic(UNIT), _command(command), qos=1).wait_for_publish(5)
        assert wait_for(lambda: pub.stats.commands == 3, 10)
    finally:
        pub.stop()
        server.loop_stop()
        server.disconnect()
    assert wait_for(lambda: bool(rec.docs()) and rec.docs()[-1]["reason"] == "shutdown", 10)
    rec.close()
    assert [(d["state"], d["reason"]) for d in rec.docs()] == [
        ("online", "connected"),
        ("online", "heartbeat"),  # send_status, and only send_status, asks for one now
        ("offline", "shutdown"),
    ]
    assert [m.qos for m in rec.messages] == [1, 1, 1]  # at least once, the goodbye too


def _puback(code: int) -> ReasonCode:
    return ReasonCode(PacketTypes.PUBACK, identifier=code)


def test_pubacks_decide_what_leaves_the_outbox(
    outbox: Outbox, rng: random.Random, caplog: pytest.LogCaptureFixture
) -> None:
    """The PUBACK handler on its own (mids as paho reports them): a success code queues the row for
    deletion, a failure code (0x87) or "no matching subscribers" (0x10) keeps it and pauses sending with a
    backoff that a success resets; a PUBACK of a status message is no result."""
    ids = fill(outbox, UNIT, 5, rng)
    pub = publisher(outbox, 1, reconnect_min_s=1.0, reconnect_max_s=8.0)
    for mid, rid in enumerate(ids, start=1):
        pub._inflight[mid], pub._inflight_ids = (rid, 0.0), pub._inflight_ids | {rid}
    before = time.monotonic()
    pub._on_publish(None, None, 99, _puback(0), None)  # type: ignore[arg-type]  # a status message
    pub._on_publish(None, None, 1, _puback(0), None)  # type: ignore[arg-type]
    assert pub.stats.acked == 1 and pub._hold_until == 0.0
    first_ack_at = pub._first_ack_at  # the batch's clock starts with its first acknowledgement
    assert before <= first_ack_at <= time.monotonic()
    pub._on_publish(None, None, 2, _puback(0x87), None)  # type: ignore[arg-type]
    first_hold = pub._hold_until - before
    pub._on_publish(None, None, 3, _puback(0x10), None)  # type: ignore[arg-type]
    second_hold = pub._hold_until - before
    assert (pub.stats.acked, pub.stats.refused_by_broker, pub.stats.no_subscribers) == (1, 1, 1)
    assert 0.5 <= first_hold <= 1.1 and 1.0 <= second_hold <= 2.1  # 1 s then 2 s, with jitter
    assert pub._inflight_ids == {ids[3], ids[4]} and list(pub._inflight) == [4, 5]
    pub._on_publish(None, None, 4, _puback(0), None)  # type: ignore[arg-type]  # a success resets the backoff
    assert pub._first_ack_at == first_ack_at  # the same batch
    assert pub._acked == [ids[0], ids[3]] and pub._acked_ids == {ids[0], ids[3]} and pub.stats.acked == 2
    pub.require_subscriber = False  # "no matching subscribers" is then a delivery like any other
    pub._on_publish(None, None, 5, _puback(0x10), None)  # type: ignore[arg-type]
    assert pub._acked == [ids[0], ids[3], ids[4]] and pub.stats.no_subscribers == 1 and pub.stats.acked == 3
    pub._inflight[6], pub._inflight_ids = (ids[1], 0.0), {ids[1]}
    before = time.monotonic()
    pub._on_publish(None, None, 6, _puback(0x87), None)  # type: ignore[arg-type]
    assert 0.5 <= pub._hold_until - before <= 1.1 and pub.stats.refused_by_broker == 2  # back to 1 s
    pub.require_subscriber = True
    pub._inflight[7], pub._inflight_ids = (ids[2], 0.0), {ids[2]}
    pub._on_publish(None, None, 7, _puback(0x10), None)  # type: ignore[arg-type]
    assert pub.stats.no_subscribers == 2 and pub.stats.acked == 3
    pub._flush_acks(force=True)
    left = sorted(r.id for r in outbox.fetch(10))
    assert left == sorted([ids[1], ids[2]])  # only what the broker took with a success code left the outbox
    assert pub.idle() and pub._acked_ids == set()
    events = [(r.getMessage(), r.edgeface_fields) for r in caplog.records if r.name == "edgeface.mqtt.publisher"]  # type: ignore[attr-defined]
    assert [name for name, _ in events] == ["mqtt.publish_refused", "mqtt.no_subscribers", "mqtt.publish_refused"] + [
        "mqtt.no_subscribers"
    ]
    refused, nosub = events[0][1], events[1][1]
    assert refused["id"] == ids[1] and refused["reason"] == "Not authorized" and 0.5 <= refused["retry_in_s"] <= 1.0
    assert "device.id" in refused["hint"] and "ACL" in refused["hint"]
    assert nosub["id"] == ids[2] and 1.0 <= nosub["retry_in_s"] <= 2.0 and "stays queued" in nosub["hint"]


def test_acknowledged_rows_are_deleted_in_batches_and_a_failed_delete_is_retried_later(
    outbox: Outbox, rng: random.Random, caplog: pytest.LogCaptureFixture
) -> None:
    """While results are in flight, deletions wait for 200 acknowledged rows or 20 ms after the first;
    forced (reconnecting, stopping) or with nothing in flight they go at once."""
    ids = fill(outbox, UNIT, 240, rng)
    pub = publisher(outbox, 1)
    pub._flush_acks(force=True)  # nothing acknowledged: nothing to do
    pub._inflight[1] = ("in-flight", 0.0)

    def acked(rows: list[str], recent: bool = True) -> None:
        pub._acked, pub._acked_ids = list(rows), set(rows)
        pub._first_ack_at = time.monotonic() + (60.0 if recent else -1.0)

    acked(ids[:199])
    assert not pub.idle()
    pub._flush_acks()
    assert outbox.pending_count() == 240  # 199 rows, the first acknowledged just now: wait for more
    acked(ids[:200])
    pub._flush_acks()
    assert outbox.pending_count() == 40 and pub._acked == [] and pub._acked_ids == set()
    acked(ids[200:205], recent=False)
    pub._flush_acks()
    assert outbox.pending_count() == 35  # the first of them waited long enough
    acked(ids[205:210])
    pub._flush_acks(force=True)
    assert outbox.pending_count() == 30
    pub._inflight.clear()
    acked(ids[210:215])
    assert not pub.idle()  # acknowledged rows not yet deleted: not idle either
    pub._flush_acks()
    assert outbox.pending_count() == 25 and pub.stats.inflight == 0  # nothing in flight: no reason to wait
    acked(ids[215:220])
    outbox.close()  # the delete fails (a full or vanished disk): the rows stay acknowledged, retried later
    before = time.monotonic()
    pub._flush_acks(force=True)
    assert pub._acked == ids[215:220] and pub._acked_ids == set(ids[215:220])
    assert 0.4 <= pub._outbox_retry_at - before <= 0.6
    pub._flush_acks(force=True)  # within the retry delay: not tried again
    (rec,) = [r for r in caplog.records if r.getMessage() == "outbox.ack_failed"]
    fields = rec.edgeface_fields  # type: ignore[attr-defined]
    assert fields["rows"] == 5 and fields["retry_in_s"] == 0.5 and "closed" in fields["error"]


class FakeLink:
    """The publisher's side of a connection, recorded: drop(), subscribe(), publish()."""

    def __init__(self) -> None:
        self.connected = True
        self.dropped: list[str] = []
        self.subscribed: list[tuple[str, int]] = []
        self.published: list[tuple[str, int, bool]] = []
        self.ids: list[str] = []  # result ids, in the order sent
        self.statuses: list[dict[str, Any]] = []
        self.rcs: list[int] = []  # paho's return codes for the next results (success when empty)
        self.client = self

    def drop(self, why: str) -> None:
        self.dropped.append(why)

    def subscribe(self, topic: str, qos: int) -> None:
        self.subscribed.append((topic, qos))

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> mqtt.MQTTMessageInfo:
        info = mqtt.MQTTMessageInfo(100 + len(self.published))
        info.rc = self.rcs.pop(0) if self.rcs and "results" in topic else mqtt.MQTT_ERR_SUCCESS
        if info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            self.published.append((topic, qos, retain))
            if "results" in topic:
                self.ids.append(json.loads(payload)["id"])
            else:
                self.statuses.append(json.loads(payload))
        return info


def test_an_acknowledgement_overdue_drops_the_link_to_resend(outbox: Outbox, caplog: pytest.LogCaptureFixture) -> None:
    pub = publisher(outbox, 1, ack_timeout_s=60.0)
    link = FakeLink()
    pub._conn = link  # type: ignore[assignment]
    pub._check_ack_timeouts(1000.0)  # nothing in flight
    pub._inflight = {7: ("a", 100.0), 8: ("b", 130.0)}
    pub._check_ack_timeouts(160.0)  # the oldest waited exactly ack_timeout_s: not yet
    assert link.dropped == [] and pub.stats.ack_timeouts == 0
    pub._check_ack_timeouts(161.55)
    assert link.dropped == ["acknowledgement timeout"] and pub.stats.ack_timeouts == 1
    assert pub._inflight == {7: ("a", 161.55), 8: ("b", 161.55)}  # the clock restarts for the resent ones
    pub._check_ack_timeouts(200.0)
    assert pub.stats.ack_timeouts == 1
    pub._check_ack_timeouts(300.0)
    assert pub.stats.ack_timeouts == 2 and len(link.dropped) == 2
    rec = [r for r in caplog.records if r.getMessage() == "mqtt.ack_timeout"][0]
    assert rec.edgeface_fields == {"waited_s": 61.6, "inflight": 2, "action": "reconnecting to resend"}  # type: ignore[attr-defined]


def test_online_subscribes_and_takes_the_brokers_receive_maximum(
    outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    from paho.mqtt.properties import Properties

    caplog.set_level(logging.INFO, logger="edgeface.mqtt.publisher")
    pub = publisher(outbox, 1, inflight=50)
    link = FakeLink()
    pub._conn = link  # type: ignore[assignment]
    props = Properties(PacketTypes.CONNACK)
    props.ReceiveMaximum = 10
    before = time.time()
    pub._on_up(link, False, props)  # type: ignore[arg-type]
    assert pub._effective_window() == 10 and pub._wake.is_set()
    assert [(d["state"], d["reason"]) for d in link.statuses] == [("online", "connected")]
    (rec,) = [r for r in caplog.records if r.getMessage() == "publisher.online"]
    assert rec.edgeface_fields == {"device_id": UNIT, "window": 10, "resending": 0, "session_present": False}  # type: ignore[attr-defined]
    assert link.subscribed == [(topics.commands_topic(UNIT), 1), (topics.GALLERY_ANNOUNCE, 1)]
    assert pub.stats.connected and pub.stats.connects == 1 and before <= (pub.stats.connected_since or 0) <= time.time()
    pub._on_down("keepalive timeout")
    assert pub.stats.connected is False and pub.stats.disconnects == 1 and pub.stats.connected_since is None
    assert pub.stats.last_error == "keepalive timeout"
    pub._on_up(link, True, None)  # type: ignore[arg-type]  # MQTT 3.1.1: no properties
    assert pub._effective_window() == 50 and pub.stats.connects == 2
    props.ReceiveMaximum = 80  # larger than ours: ours holds
    pub._on_up(link, True, props)  # type: ignore[arg-type]
    assert pub._effective_window() == 50
    pub._on_up(link, True, Properties(PacketTypes.CONNACK))  # type: ignore[arg-type]  # MQTT 5 without the limit
    assert pub._effective_window() == 50 and pub.stats.connects == 4
    pub._on_down("gone")
    pub._on_down("gone again")
    assert pub.stats.disconnects == 3
    assert publisher(outbox, 1, inflight=0)._effective_window() == 1  # never less than one in flight


def test_the_window_is_filled_a_quarter_at_a_time_without_resending_what_is_in_hand(
    outbox: Outbox, rng: random.Random, caplog: pytest.LogCaptureFixture
) -> None:
    ids = fill(outbox, UNIT, 30, rng, match_share=0.0)  # one priority: sent in the order stored
    pub = publisher(outbox, 1, inflight=8)
    link = FakeLink()
    pub._conn = link  # type: ignore[assignment]
    now = time.monotonic()
    pub._hold_until = now + 5  # the broker refused: paused
    pub._fill_window(now)
    pub._hold_until, pub._outbox_retry_at = 0.0, now + 5  # the outbox failed: paused
    pub._fill_window(now)
    assert link.ids == []
    pub._hold_until = pub._outbox_retry_at = now  # both pauses end exactly now
    pub._fill_window(now)
    assert link.ids == ids[:8] and pub.stats.published == 8 and pub.stats.inflight == 8 and pub._wake.is_set()
    assert {p[:2] for p in link.published} == {(topics.results_topic(UNIT), 1)}
    assert sorted(pub._inflight.values()) == sorted((i, now) for i in ids[:8])
    pub._fill_window(now)  # full
    done = [pub._inflight.pop(mid)[0] for mid in list(pub._inflight)[:1]]
    pub._fill_window(now)  # one of eight free: less than a quarter, wait
    assert len(link.ids) == 8
    done += [pub._inflight.pop(mid)[0] for mid in list(pub._inflight)[:1]]
    pub._acked, pub._acked_ids = list(done), set(done)  # acknowledged, not yet deleted: not sent again
    pub._inflight_ids -= set(done)
    pub._fill_window(now)
    assert link.ids == ids[:10] and len(pub._inflight) == 8
    # paho refuses one (its queue is full): the rest wait for the next round; "not connected" is queued by paho
    for mid in list(pub._inflight)[:4]:  # four more acknowledged
        rid = pub._inflight.pop(mid)[0]
        pub._inflight_ids.discard(rid)
        pub._acked.append(rid)
        pub._acked_ids.add(rid)
    link.rcs = [mqtt.MQTT_ERR_NO_CONN, mqtt.MQTT_ERR_QUEUE_SIZE]
    pub._fill_window(now)
    assert link.ids == ids[:11] and len(pub._inflight) == 5 and pub.stats.published == 11
    assert pub.stats.inflight == 5 and pub._wake.is_set()  # counted, and the next round comes at once
    (rec,) = [r for r in caplog.records if r.getMessage() == "mqtt.publish_failed"]
    assert rec.edgeface_fields == {"id": ids[11], "error": mqtt.error_string(mqtt.MQTT_ERR_QUEUE_SIZE)}  # type: ignore[attr-defined]
    pub._fill_window(now)
    assert link.ids == ids[:14] and len(pub._inflight) == 8
    # An empty outbox: nothing sent, and no reason to wake up again.
    outbox.ack(ids)
    pub._inflight.clear()
    pub._inflight_ids.clear()
    pub._acked, pub._acked_ids = [], set()
    pub._fill_window(now)
    assert len(link.ids) == 14 and not pub._wake.is_set()


def test_heartbeats_are_retained_statuses_and_a_failing_outbox_pauses_it(
    outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    pub = publisher(outbox, 1, heartbeat_s=30.0)
    before = time.monotonic()
    pub._heartbeat("heartbeat")  # not connected: nothing sent, the next one still planned
    assert pub.stats.heartbeats == 0 and before + 30.0 <= pub._next_heartbeat <= time.monotonic() + 30.0
    link = FakeLink()
    pub._conn = link  # type: ignore[assignment]
    pub._heartbeat("connected")
    pub._heartbeat("heartbeat")
    assert link.published == [(topics.status_topic(UNIT), 1, True)] * 2 and pub.stats.heartbeats == 2
    link.connected = False
    pub._heartbeat("heartbeat")
    assert pub.stats.heartbeats == 2

    def broken(*args: Any) -> Any:
        raise OutboxError("database disk image is malformed")

    assert pub._outbox_call(lambda a, b: a + b, 2, 3) == 5
    before = time.monotonic()
    assert pub._outbox_call(broken, 1) is None
    assert before + 1.0 <= pub._outbox_retry_at <= time.monotonic() + 1.0
    (rec,) = [r for r in caplog.records if r.getMessage() == "outbox.unavailable"]
    assert rec.edgeface_fields == {"error": "database disk image is malformed", "retry_in_s": 1.0}  # type: ignore[attr-defined]


def test_a_publisher_starts_once_in_its_own_thread(outbox: Outbox, rng: random.Random) -> None:
    pub = publisher(outbox, 1)  # port 1: nobody listens; it keeps trying
    assert not pub.alive and pub.idle()
    assert pub.wait_drained(0.1)  # an empty outbox, nothing in flight: drained
    fill(outbox, UNIT, 1, rng)
    assert not pub.wait_drained(0.1)  # a result waits (and no thread sends it): not drained
    pub.start()
    try:
        assert pub._thread is not None and pub._thread.name == "edgeface-publisher" and pub._thread.daemon
        assert pub.alive
        with pytest.raises(RuntimeError, match="^publisher already started$"):
            pub.start()
    finally:
        pub.stop()
    assert not pub.alive and pub.error is None


def test_small_windows_refill_as_soon_as_a_quarter_is_free(outbox: Outbox, rng: random.Random) -> None:
    """A quarter of the window, rounded down and never less than one: 10 -> 2, 4 -> 1, 1 -> 1."""
    fill(outbox, UNIT, 30, rng, match_share=0.0)
    for window, quarter in ((10, 2), (4, 1), (1, 1)):
        pub = publisher(outbox, 1, inflight=window)
        link = FakeLink()
        pub._conn = link  # type: ignore[assignment]
        now = time.monotonic()
        pub._fill_window(now)
        assert len(link.ids) == window
        freed = 0
        while len(link.ids) == window and freed < window:
            rid = pub._inflight.pop(next(iter(pub._inflight)))[0]  # acknowledged
            pub._inflight_ids.discard(rid)
            pub._acked.append(rid)
            pub._acked_ids.add(rid)
            freed += 1
            pub._fill_window(now)
        assert (freed, len(link.ids) - window) == (quarter, quarter), window
        outbox.ack(link.ids)
    assert outbox.pending_count() == 30 - (10 + 2) - (4 + 1) - (1 + 1)


def test_a_failed_delete_is_tried_again_once_its_delay_is_over(
    outbox: Outbox, rng: random.Random, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = fill(outbox, UNIT, 3, rng)
    t = [5000.0]
    monkeypatch.setattr(publisher_module, "time", types.SimpleNamespace(monotonic=lambda: t[0], time=time.time))
    pub = publisher(outbox, 1)
    pub._inflight[1] = ("in-flight", 0.0)
    t[0] = 0.02  # exactly ACK_FLUSH_S after the first acknowledgement: the batch goes
    pub._acked, pub._acked_ids, pub._first_ack_at = [ids[0]], {ids[0]}, 0.0
    pub._flush_acks()
    assert outbox.pending_count() == 2
    ids = ids[1:]
    pub._inflight.clear()
    t[0] = 5000.0
    pub._acked, pub._acked_ids = list(ids), set(ids)
    pub._outbox_retry_at = 5000.5
    t[0] = 5000.4
    pub._flush_acks(force=True)
    assert outbox.pending_count() == 2  # still waiting
    t[0] = 5000.5
    pub._flush_acks(force=True)
    assert outbox.pending_count() == 0 and pub.idle()  # due exactly when the delay ends


def test_stopping_with_results_in_flight_keeps_them_and_ends_cleanly(
    broker: LocalBroker, outbox: Outbox, start_ingest: Any, rng: random.Random
) -> None:
    """stop() while PUBACKs are missing: the publisher waits for them a moment, says goodbye, ends without
    an error, and every unacknowledged result is still in the outbox for the next start."""
    start_ingest(plain_settings(broker.port, "ingest-1"))
    proxy = TcpProxy(broker.port)
    pub = publisher(outbox, proxy.port)
    pub.start()
    try:
        assert wait_for(lambda: pub.stats.connected, 10)
        proxy.stall("down")  # results reach the broker, its PUBACKs never reach the unit
        fill(outbox, UNIT, 20, rng)
        pub.notify()
        assert wait_for(lambda: pub.stats.published == 20, 10)
        pub.stop()
    finally:
        pub.stop()
        proxy.close()
    assert not pub.alive and pub.error is None
    assert pub.stats.acked == 0 and outbox.pending_count() == 20


class GoodbyeLink(FakeLink):
    """A link at shutdown: each step() delivers the PUBACK of one result in flight (the first ``acks``)."""

    def __init__(self, pub: Publisher, acks: int) -> None:
        super().__init__()
        self.pub, self.acks, self.steps, self.closed = pub, acks, 0, False
        self.goodbye: mqtt.MQTTMessageInfo | None = None
        self.goodbye_acked_before_close = False

    def step(self, wait: float) -> bool:
        self.steps += 1
        time.sleep(0.01)
        if self.goodbye is not None:
            self.goodbye._published = True  # its PUBACK arrives with the next network step
        if self.acks and self.pub._inflight:
            self.acks -= 1
            self.pub._on_publish(None, None, next(iter(self.pub._inflight)), _puback(0), None)  # type: ignore[arg-type]
        return True

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> mqtt.MQTTMessageInfo:
        self.goodbye = super().publish(topic, payload, qos, retain)
        return self.goodbye

    def close(self) -> None:
        self.goodbye_acked_before_close = self.goodbye is not None and self.goodbye.is_published()
        self.closed = True
        self.connected = False


def test_the_goodbye_waits_for_acknowledgements_then_deletes_what_was_acknowledged(
    outbox: Outbox, rng: random.Random, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edgeface.mqtt.publisher")
    ids = fill(outbox, UNIT, 4, rng)
    pub = publisher(outbox, 1)
    link = GoodbyeLink(pub, acks=2)
    pub._conn = link  # type: ignore[assignment]
    pub.stats.connected, pub.stats.published = True, 4
    pub._acked, pub._acked_ids, pub._first_ack_at = [ids[0]], {ids[0]}, time.monotonic() + 60  # a batch waiting
    pub._inflight = {1: (ids[1], 0.0), 2: (ids[2], 0.0), 3: (ids[3], 0.0)}  # two PUBACKs come, one never does
    pub._inflight_ids = set(ids[1:])
    pub._outbox_retry_at = time.monotonic() + 60  # a failed delete earlier: tried again at the end regardless
    pub._shutdown()
    assert link.closed and link.steps >= 3  # it waited for the acknowledgements (up to 2 s)
    assert link.goodbye_acked_before_close  # and for the broker to take the goodbye before closing
    assert [(d["state"], d["reason"]) for d in link.statuses] == [("offline", "shutdown")]
    assert [r.id for r in outbox.fetch(10)] == [ids[3]]  # the acknowledged ones deleted, the other kept
    assert pub.stats.connected is False
    (rec,) = [r for r in caplog.records if r.getMessage() == "publisher.stopped"]
    assert rec.edgeface_fields == {"published": 4, "acked": 2, "inflight_left": 1}  # type: ignore[attr-defined]


def test_a_crashed_publisher_records_why_for_the_supervisor(
    outbox: Outbox, rng: random.Random, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    pub = publisher(outbox, 1)

    def broken_step() -> None:
        raise RuntimeError("wedged interpreter")

    monkeypatch.setattr(pub, "_step", broken_step)
    monkeypatch.setattr("threading.excepthook", lambda args: None)  # the thread's exception is the point here
    fill(outbox, UNIT, 1, rng)
    pub.start()
    assert wait_for(lambda: not pub.alive, 10)
    assert not pub.wait_drained(30)  # a dead thread: not drained, and no use waiting
    assert isinstance(pub.error, RuntimeError) and str(pub.error) == "wedged interpreter"
    (rec,) = [r for r in caplog.records if r.getMessage() == "publisher.crashed"]
    assert rec.edgeface_fields == {"error": "wedged interpreter"}  # type: ignore[attr-defined]
