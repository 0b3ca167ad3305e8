"""TLS and the ACL, with deploy/mosquitto/mosquitto.conf and deploy/mosquitto/acl running for real."""

from __future__ import annotations

import random
import ssl
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from edgeface.bench.broker import LocalBroker
from edgeface.bench.mqttload import outbox_item, sample_result, wait_for
from edgeface.errors import ConfigError
from edgeface.mqtt import Publisher, topics
from edgeface.mqtt.link import LinkSettings
from edgeface.outbox import Outbox

from .conftest import SERVER, fill, mtls_settings


def tls_client(broker: LocalBroker, pki: dict[str, Path], identity: str | None, *, ca: str = "ca",
               port: str = "mtls", user: tuple[str, str] | None = None, cert: str | None = None) -> dict[str, Any]:
    """A raw paho client; returns what happened: connack reasons, PUBACK reasons, messages."""
    out: dict[str, Any] = {"connack": [], "puback": {}, "messages": [], "suback": [], "error": None}
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=identity or "anonymous", protocol=mqtt.MQTTv5)
    certfile = pki[f"{cert or identity}.crt"] if (cert or identity) and not user else None
    keyfile = pki[f"{cert or identity}.key"] if (cert or identity) and not user else None
    c.tls_set(ca_certs=str(pki[ca]), certfile=str(certfile) if certfile else None,
              keyfile=str(keyfile) if keyfile else None)
    if user:
        c.username_pw_set(*user)
    c.on_connect = lambda cl, u, f, rc, p: out["connack"].append(rc)
    c.on_publish = lambda cl, u, mid, rc, p: out["puback"].__setitem__(mid, rc)
    c.on_message = lambda cl, u, m: out["messages"].append(m)
    c.on_subscribe = lambda cl, u, mid, rcs, p: out["suback"].extend(rcs)
    out["client"] = c
    try:
        c.connect("127.0.0.1", broker.ports[port])
    except (ssl.SSLError, OSError) as e:
        out["error"] = e
        return out
    c.loop_start()
    wait_for(lambda: out["connack"], 3)
    return out


def close(*clients: dict[str, Any]) -> None:
    for c in clients:
        c["client"].loop_stop()
        c["client"].disconnect()


def connected(c: dict[str, Any]) -> bool:
    return bool(c["connack"]) and not c["connack"][0].is_failure and c["client"].is_connected()


def test_unit_with_its_certificate_delivers_over_mutual_tls(tls_broker: LocalBroker, pki: dict[str, Path],
                                                            tmp_path: Path, start_ingest: Any) -> None:
    ingest = start_ingest(mtls_settings(tls_broker, pki, SERVER))
    box = Outbox(tmp_path / "o.sqlite3")
    ids = fill(box, "unit-a", 50, random.Random(3))
    pub = Publisher(box, mtls_settings(tls_broker, pki, "unit-a"), "unit-a", reconnect_min_s=0.05)
    pub.start()
    try:
        assert pub.wait_drained(30)
        assert ingest.wait_count(50)
        assert wait_for(lambda: ingest.store.device("unit-a") is not None, 10)
    finally:
        pub.stop()
        box.close()
    assert sorted(ingest.store.ids()) == sorted(ids)


def _never_connects(tls_broker: LocalBroker, settings: LinkSettings, tmp_path: Path) -> None:
    box = Outbox(tmp_path / "refused.sqlite3")
    fill(box, settings.client_id, 5, random.Random(4))
    pub = Publisher(box, settings, settings.client_id, reconnect_min_s=0.05, reconnect_max_s=0.2)
    pub.start()
    try:
        assert wait_for(lambda: pub.stats.connect_failures >= 2, 20)
        assert pub.stats.connects == 0 and pub.stats.published == 0
        assert box.stats().pending == 5
    finally:
        pub.stop()
        box.close()


def test_client_without_a_certificate_is_refused(tls_broker: LocalBroker, pki: dict[str, Path],
                                                 tmp_path: Path) -> None:
    raw = tls_client(tls_broker, pki, None)
    assert not connected(raw)
    settings = LinkSettings(host="127.0.0.1", port=tls_broker.ports["mtls"], client_id="unit-a", ca_file=pki["ca"],
                            connect_timeout_s=2)
    _never_connects(tls_broker, settings, tmp_path)


def test_certificate_from_an_untrusted_ca_is_refused(tls_broker: LocalBroker, pki: dict[str, Path],
                                                     tmp_path: Path) -> None:
    raw = tls_client(tls_broker, pki, "unit-a", cert="rogue-unit-a")
    assert not connected(raw)
    settings = LinkSettings(host="127.0.0.1", port=tls_broker.ports["mtls"], client_id="unit-a", ca_file=pki["ca"],
                            cert_file=pki["rogue-unit-a.crt"], key_file=pki["rogue-unit-a.key"], connect_timeout_s=2)
    _never_connects(tls_broker, settings, tmp_path)


def test_the_unit_verifies_the_broker_certificate(tls_broker: LocalBroker, pki: dict[str, Path],
                                                  tmp_path: Path) -> None:
    raw = tls_client(tls_broker, pki, "unit-a", ca="rogue-ca")
    assert isinstance(raw["error"], ssl.SSLError) and "certificate verify failed" in str(raw["error"])
    settings = LinkSettings(host="127.0.0.1", port=tls_broker.ports["mtls"], client_id="unit-a",
                            ca_file=pki["rogue-ca"], cert_file=pki["unit-a.crt"], key_file=pki["unit-a.key"],
                            connect_timeout_s=2)
    _never_connects(tls_broker, settings, tmp_path)


def test_unit_a_cannot_publish_to_unit_b_topics(tls_broker: LocalBroker, pki: dict[str, Path],
                                                tmp_path: Path) -> None:
    watcher = tls_client(tls_broker, pki, SERVER)
    assert connected(watcher)
    watcher["client"].subscribe(topics.RESULTS_FILTER, qos=1)
    assert wait_for(lambda: watcher["suback"], 5) and not watcher["suback"][0].is_failure
    a = tls_client(tls_broker, pki, "unit-a")
    assert connected(a)
    rng = random.Random(9)
    _, _, forged, _ = outbox_item(sample_result("unit-b", rng))
    _, _, own, _ = outbox_item(sample_result("unit-a", rng))
    forged_mid = a["client"].publish(topics.results_topic("unit-b"), forged, qos=1).mid
    a["client"].publish(topics.status_topic("unit-b"), b'{"state":"offline"}', qos=1, retain=True)
    own_mid = a["client"].publish(topics.results_topic("unit-a"), own, qos=1).mid
    assert wait_for(lambda: forged_mid in a["puback"] and own_mid in a["puback"], 10)
    assert a["puback"][forged_mid].is_failure and a["puback"][forged_mid].value == 0x87  # not authorised
    assert wait_for(lambda: watcher["messages"], 10)
    time.sleep(0.5)
    seen = [m.topic for m in watcher["messages"]]
    assert seen == [topics.results_topic("unit-a")]  # unit-b's topic received nothing
    close(a, watcher)


def test_unit_b_topic_subscriber_receives_nothing_from_unit_a(tls_broker: LocalBroker, pki: dict[str, Path],
                                                              tmp_path: Path) -> None:
    b_watch = tls_client(tls_broker, pki, SERVER)
    b_watch["client"].subscribe(topics.results_topic("unit-b"), qos=1)
    b_watch["client"].subscribe(topics.status_topic("unit-b"), qos=1)
    assert wait_for(lambda: len(b_watch["suback"]) == 2, 5)
    # The publisher refuses to start with an identity the broker would not accept for this topic...
    box = Outbox(tmp_path / "o.sqlite3")
    with pytest.raises(ConfigError, match="CN is 'unit-a'"):
        Publisher(box, mtls_settings(tls_broker, pki, "unit-a"), "unit-b")
    # ...and rows that name another unit's topic are refused by the broker and stay queued.
    rng = random.Random(10)
    doc = sample_result("unit-b", rng)
    box.put(*outbox_item(doc))
    pub = Publisher(box, mtls_settings(tls_broker, pki, "unit-a"), "unit-a", reconnect_min_s=0.05,
                    reconnect_max_s=0.2)
    pub.start()
    try:
        assert wait_for(lambda: pub.stats.refused_by_broker >= 1, 10)
        assert box.pending_ids() == [doc["id"]]
    finally:
        pub.stop()
        box.close()
    time.sleep(0.3)
    assert b_watch["messages"] == []
    close(b_watch)


def test_a_unit_cannot_read_other_units_results(tls_broker: LocalBroker, pki: dict[str, Path]) -> None:
    spy = tls_client(tls_broker, pki, "unit-b")
    spy["client"].subscribe(topics.RESULTS_FILTER, qos=1)
    assert wait_for(lambda: spy["suback"], 5)
    a = tls_client(tls_broker, pki, "unit-a")
    _, _, data, _ = outbox_item(sample_result("unit-a", random.Random(2)))
    info = a["client"].publish(topics.results_topic("unit-a"), data, qos=1)
    info.wait_for_publish(5)
    time.sleep(0.5)
    assert spy["messages"] == []
    close(a, spy)


def test_username_and_password_listener(tls_broker: LocalBroker, pki: dict[str, Path]) -> None:
    good = tls_client(tls_broker, pki, "unit-p", port="password", user=("unit-p", "correct horse"))
    assert connected(good)
    mid = good["client"].publish(topics.results_topic("unit-p"), b"{}", qos=1).mid
    other = good["client"].publish(topics.results_topic("unit-a"), b"{}", qos=1).mid
    assert wait_for(lambda: mid in good["puback"] and other in good["puback"], 5)
    assert not good["puback"][mid].is_failure and good["puback"][other].is_failure
    bad = tls_client(tls_broker, pki, "unit-p", port="password", user=("unit-p", "wrong"))
    assert not connected(bad)
    close(good)
