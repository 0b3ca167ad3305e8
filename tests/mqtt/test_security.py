"""TLS and the access rules, with deploy/mosquitto/mosquitto.conf and the rules `edgeface broker rules` writes,
running for real: what each identity may publish and subscribe to, client ids bound to identities."""

from __future__ import annotations

import random
import ssl
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from edgeface.errors import ConfigError
from edgeface.mqtt import Publisher, dynsec, topics
from edgeface.mqtt.link import LinkSettings
from edgeface.outbox import Outbox
from edgeface.testing.broker import LocalBroker
from edgeface.testing.mqttload import outbox_item, sample_result, wait_for

from .conftest import CENTRAL, SERVER, WEB, fill, mtls_settings


def tls_client(
    broker: LocalBroker,
    pki: dict[str, Path],
    identity: str | None,
    *,
    ca: str = "ca",
    port: str | None = None,
    user: tuple[str, str] | None = None,
    cert: str | None = None,
    client_id: str | None = None,
) -> dict[str, Any]:
    """A raw paho client; returns what happened: connack reasons, PUBACK reasons, messages, disconnects.
    Central identities connect to the central listener unless ``port`` says otherwise."""
    port = port or ("central" if identity in CENTRAL and not cert else "mtls")
    out: dict[str, Any] = {"connack": [], "puback": {}, "messages": [], "suback": [], "error": None, "disconnects": []}
    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or identity or "anonymous", protocol=mqtt.MQTTv5
    )
    certfile = pki[f"{cert or identity}.crt"] if (cert or identity) and not user else None  # cert: file name
    keyfile = pki[f"{cert or identity}.key"] if (cert or identity) and not user else None
    c.tls_set(
        ca_certs=str(pki[ca]), certfile=str(certfile) if certfile else None, keyfile=str(keyfile) if keyfile else None
    )
    if user:
        c.username_pw_set(*user)
    c.on_connect = lambda cl, u, f, rc, p: out["connack"].append(rc)
    c.on_publish = lambda cl, u, mid, rc, p: out["puback"].__setitem__(mid, rc)
    c.on_message = lambda cl, u, m: out["messages"].append(m)
    c.on_subscribe = lambda cl, u, mid, rcs, p: out["suback"].extend(rcs)
    c.on_disconnect = lambda cl, u, f, rc, p: out["disconnects"].append(rc)
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


def test_unit_with_its_certificate_delivers_over_mutual_tls(
    tls_broker: LocalBroker, pki: dict[str, Path], tmp_path: Path, start_ingest: Any
) -> None:
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


def test_client_without_a_certificate_is_refused(tls_broker: LocalBroker, pki: dict[str, Path], tmp_path: Path) -> None:
    raw = tls_client(tls_broker, pki, None)
    assert not connected(raw)
    settings = LinkSettings(
        host="127.0.0.1", port=tls_broker.ports["mtls"], client_id="unit-a", ca_file=pki["ca"], connect_timeout_s=2
    )
    _never_connects(tls_broker, settings, tmp_path)


def test_certificate_from_an_untrusted_ca_is_refused(
    tls_broker: LocalBroker, pki: dict[str, Path], tmp_path: Path
) -> None:
    raw = tls_client(tls_broker, pki, "unit-a", cert="rogue-unit-a")
    assert not connected(raw)
    settings = LinkSettings(
        host="127.0.0.1",
        port=tls_broker.ports["mtls"],
        client_id="unit-a",
        ca_file=pki["ca"],
        cert_file=pki["rogue-unit-a.crt"],
        key_file=pki["rogue-unit-a.key"],
        connect_timeout_s=2,
    )
    _never_connects(tls_broker, settings, tmp_path)


def test_the_unit_verifies_the_broker_certificate(
    tls_broker: LocalBroker, pki: dict[str, Path], tmp_path: Path
) -> None:
    raw = tls_client(tls_broker, pki, "unit-a", ca="rogue-ca")
    assert isinstance(raw["error"], ssl.SSLError) and "certificate verify failed" in str(raw["error"])
    settings = LinkSettings(
        host="127.0.0.1",
        port=tls_broker.ports["mtls"],
        client_id="unit-a",
        ca_file=pki["rogue-ca"],
        cert_file=pki["unit-a.crt"],
        key_file=pki["unit-a.key"],
        connect_timeout_s=2,
    )
    _never_connects(tls_broker, settings, tmp_path)


def test_unit_a_cannot_publish_to_unit_b_topics(tls_broker: LocalBroker, pki: dict[str, Path], tmp_path: Path) -> None:
    watcher = tls_client(tls_broker, pki, WEB)
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


def test_unit_b_topic_subscriber_receives_nothing_from_unit_a(
    tls_broker: LocalBroker, pki: dict[str, Path], tmp_path: Path
) -> None:
    b_watch = tls_client(tls_broker, pki, WEB)
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
    pub = Publisher(box, mtls_settings(tls_broker, pki, "unit-a"), "unit-a", reconnect_min_s=0.05, reconnect_max_s=0.2)
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
    assert connected(spy)
    refused = _suback(spy, topics.RESULTS_FILTER)
    assert refused.is_failure and refused.value == 0x87, refused  # not authorised
    # Positive controls: the spy is subscribed to what it may read and receives it, and the server's
    # watcher sees the result that was published, so "the spy got no result" is not a dead connection.
    assert not _suback(spy, topics.commands_topic("unit-b")).is_failure
    watcher = tls_client(tls_broker, pki, WEB)
    assert connected(watcher)
    assert not _suback(watcher, topics.RESULTS_FILTER).is_failure
    a = tls_client(tls_broker, pki, "unit-a")
    assert connected(a)
    _, _, data, _ = outbox_item(sample_result("unit-a", random.Random(2)))
    a["client"].publish(topics.results_topic("unit-a"), data, qos=1).wait_for_publish(5)
    watcher["client"].publish(topics.commands_topic("unit-b"), b'{"command":"sync_gallery"}', qos=1)
    assert wait_for(lambda: any(m.topic == topics.results_topic("unit-a") for m in watcher["messages"]), 10)
    assert wait_for(lambda: spy["messages"], 10)  # the command: published after the result, on the same broker
    time.sleep(0.3)
    assert [m.topic for m in spy["messages"]] == [topics.commands_topic("unit-b")]
    close(a, spy, watcher)


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


def _suback(c: dict[str, Any], topic: str) -> Any:
    before = len(c["suback"])
    c["client"].subscribe(topic, qos=1)
    assert wait_for(lambda: len(c["suback"]) > before, 5), f"no SUBACK for {topic}"
    return c["suback"][before]


def test_a_unit_may_subscribe_only_to_its_commands_and_the_announcement(
    tls_broker: LocalBroker, pki: dict[str, Path]
) -> None:
    spy = tls_client(tls_broker, pki, "unit-b")
    assert connected(spy)
    # Positive controls: what a unit needs is granted.
    assert not _suback(spy, topics.commands_topic("unit-b")).is_failure
    assert not _suback(spy, topics.GALLERY_ANNOUNCE).is_failure
    for topic in (
        f"$share/edgeface-ingest/{topics.RESULTS_FILTER}",
        f"$share/other/{topics.RESULTS_FILTER}",
        topics.RESULTS_FILTER,
        topics.STATUS_FILTER,
        topics.commands_topic("unit-a"),
        "#",
        "$SYS/#",
        "edgeface/#",
        "$CONTROL/dynamic-security/#",
    ):
        reason = _suback(spy, topic)
        assert reason.is_failure and reason.value == 0x87, (topic, reason)  # not authorised
    close(spy)


def test_a_unit_in_the_ingest_shared_subscription_loses_nothing(
    tls_broker: LocalBroker, pki: dict[str, Path], tmp_path: Path, start_ingest: Any
) -> None:
    """The review's attack: with one ingest worker, 10 of 20 results went to the unit's subscription and
    were dropped there, while their senders had their PUBACK. Now the subscription is refused."""
    ingest = start_ingest(mtls_settings(tls_broker, pki, SERVER))
    spy = tls_client(tls_broker, pki, "unit-b")
    assert connected(spy)
    refused = _suback(spy, f"$share/edgeface-ingest/{topics.RESULTS_FILTER}")
    assert refused.is_failure
    box = Outbox(tmp_path / "o.sqlite3")
    ids = fill(box, "unit-a", 20, random.Random(12))
    pub = Publisher(box, mtls_settings(tls_broker, pki, "unit-a"), "unit-a", reconnect_min_s=0.05)
    pub.start()
    try:
        assert pub.wait_drained(30)
        assert ingest.wait_count(20)
    finally:
        pub.stop()
        box.close()
    assert sorted(ingest.store.ids()) == sorted(ids)
    assert spy["messages"] == []
    close(spy)


def test_a_unit_cannot_take_over_another_clients_session(
    tls_broker: LocalBroker, pki: dict[str, Path], tmp_path: Path, start_ingest: Any
) -> None:
    """The review's attack: a unit connecting with the ingest worker's client id kicked it off, and they
    flapped, losing acknowledged results. On the unit listeners the client id is the identity."""
    ingest = start_ingest(mtls_settings(tls_broker, pki, SERVER))
    a = tls_client(tls_broker, pki, "unit-a")
    assert connected(a)
    for attack in [
        dict(identity="unit-b", client_id=SERVER),
        dict(identity="unit-b", client_id="unit-a"),
        dict(identity="unit-p", port="password", user=("unit-p", "correct horse"), client_id=SERVER),
    ]:
        x = tls_client(tls_broker, pki, **attack)  # type: ignore[arg-type]
        assert connected(x), attack  # it connects, under its own identity
        time.sleep(0.3)
        close(x)
    assert a["disconnects"] == [] and a["client"].is_connected()
    assert ingest.worker.stats.connected and ingest.worker._conn.disconnects == 0  # type: ignore[union-attr]
    box = Outbox(tmp_path / "o.sqlite3")
    ids = fill(box, "unit-a", 21, random.Random(13))
    pub = Publisher(
        box, mtls_settings(tls_broker, pki, "unit-a", client_id="not-unit-a"), "unit-a", reconnect_min_s=0.05
    )
    pub.start()
    try:
        assert pub.wait_drained(30) and ingest.wait_count(21)
    finally:
        pub.stop()
        box.close()
    assert sorted(ingest.store.ids()) == sorted(ids)
    assert ingest.worker._conn.disconnects == 0  # type: ignore[union-attr]
    # The central listener trusts only the central CA: a unit certificate, even one a CA operator
    # mistakenly named like the ingest, cannot connect there at all.
    for cert in ("unit-a", "unitca-ingest"):
        raw = tls_client(tls_broker, pki, SERVER if cert == "unitca-ingest" else cert, port="central", cert=cert)
        assert not connected(raw)
    close(a)


def test_the_rules_edgeface_writes_run_the_deploy_broker(tmp_path: Path, pki: dict[str, Path]) -> None:
    """`edgeface broker rules` writes the file the deployment runs: a listed unit works, a password unit
    logs in with its password and gets its own client id, an unlisted certificate can do nothing."""
    import json

    from click.testing import CliRunner

    from edgeface.cli.main import cli

    (tmp_path / "pw").write_text("s3cret words\n")
    out = tmp_path / "dynamic-security.json"
    r = CliRunner().invoke(
        cli, ["broker", "rules", "--unit", "unit-a", "--password-unit", f"unit-p={tmp_path / 'pw'}", "--out", str(out)]
    )
    assert r.exit_code == 0, r.output
    assert out.stat().st_mode & 0o777 == 0o600
    bad = CliRunner().invoke(cli, ["broker", "rules", "--unit", "edgeface-ingest", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "reserved" in bad.output
    broker = LocalBroker.from_deploy(tmp_path / "b", pki["ca"].parent, rules=json.loads(out.read_text()))
    broker.start()
    try:
        a = tls_client(broker, pki, "unit-a")
        p = tls_client(broker, pki, "unit-p", port="password", user=("unit-p", "s3cret words"), client_id="x")
        wrong = tls_client(broker, pki, "unit-p", port="password", user=("unit-p", "correct horse"))
        unlisted = tls_client(broker, pki, "unit-b")  # a valid certificate the rules do not name
        assert connected(a) and connected(p) and not connected(wrong)
        assert _suback(unlisted, topics.GALLERY_ANNOUNCE).is_failure
        mids = {
            name: c["client"].publish(topics.results_topic(name), b"{}", qos=1).mid
            for name, c in (("unit-a", a), ("unit-p", p), ("unit-b", unlisted))
        }
        assert wait_for(
            lambda: all(mid in c["puback"] for mid, c in zip(mids.values(), (a, p, unlisted), strict=True)), 5
        )
        assert not a["puback"][mids["unit-a"]].is_failure and not p["puback"][mids["unit-p"]].is_failure
        assert unlisted["puback"][mids["unit-b"]].is_failure  # (Mosquitto 2.0.11 then drops the connection)
        close(a, p, unlisted)
    finally:
        broker.kill()


def test_a_unit_added_at_run_time_as_the_deploy_readme_says(tmp_path: Path, pki: dict[str, Path]) -> None:
    """deploy/mosquitto/README.md, 'Adding or removing a unit': mosquitto_ctrl through the dynsec-admin
    account gives a new unit exactly its topics; deleting it takes them away again."""
    import subprocess

    broker = LocalBroker.from_deploy(
        tmp_path / "b", pki["ca"].parent, rules=dynsec.build(["unit-a"], admin_password="admin words")
    )
    broker.start()
    ctrl = [
        "mosquitto_ctrl",
        "-h",
        "127.0.0.1",
        "-p",
        str(broker.ports["password"]),
        "--cafile",
        str(pki["ca"]),
        "-u",
        "dynsec-admin",
        "-P",
        "admin words",
        "dynsec",
    ]

    def run(*args: str) -> None:
        r = subprocess.run([*ctrl, *args], capture_output=True, text=True, input="\n\n", timeout=20)
        assert r.returncode == 0 and "Error" not in r.stdout + r.stderr, (args, r.stdout, r.stderr)

    try:
        before = tls_client(broker, pki, "unit-b")
        assert _suback(before, topics.GALLERY_ANNOUNCE).is_failure
        close(before)
        role = "unit:unit-b"
        run("createRole", role)
        for t in ("results", "status"):
            run("addRoleACL", role, "publishClientSend", f"edgeface/v1/devices/unit-b/{t}", "allow")
        for t in (topics.commands_topic("unit-b"), topics.GALLERY_ANNOUNCE):
            for kind in ("subscribeLiteral", "publishClientReceive", "unsubscribeLiteral"):
                run("addRoleACL", role, kind, t, "allow")
        run("createClient", "unit-b")
        run("addClientRole", "unit-b", role)
        b = tls_client(broker, pki, "unit-b")
        assert not _suback(b, topics.GALLERY_ANNOUNCE).is_failure
        assert _suback(b, f"$share/edgeface-ingest/{topics.RESULTS_FILTER}").is_failure
        mid = b["client"].publish(topics.results_topic("unit-b"), b"{}", qos=1).mid
        assert wait_for(lambda: mid in b["puback"], 5) and not b["puback"][mid].is_failure
        close(b)
        run("deleteClient", "unit-b")
        after = tls_client(broker, pki, "unit-b")
        assert _suback(after, topics.GALLERY_ANNOUNCE).is_failure
        close(after)
    finally:
        broker.kill()
