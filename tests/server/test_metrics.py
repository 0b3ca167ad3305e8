"""The server's /metrics: who may scrape it (a bearer token, nobody without one), and what it says, parsed
with prometheus_client's own text parser: the ingest counter, the review backlog, devices offline and behind
on gallery version, build_info, process_*. Scraped in process and from a real `edgeface server run`."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edgeface.errors import ConfigError
from edgeface.mqtt import payloads, topics
from edgeface.server.app import create_app
from edgeface.server.db import Database
from edgeface.server.ingest import DbResultStore
from edgeface.server.run import wait_port
from edgeface.server.tables import publications
from edgeface.testing.broker import LocalBroker, free_port
from edgeface.testing.mqttload import sample_result, wait_for, write_toml

from .conftest import add_results, server_config

TOKEN = "m" * 40


def parse(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(fams: dict[str, Any], sample: str, **labels: str) -> float:
    for fam in fams.values():
        for s in fam.samples:
            if s.name == sample and dict(s.labels) == labels:
                return float(s.value)
    raise AssertionError(f"no sample {sample}{labels}")


@pytest.fixture
def metered(tmp_path: Path) -> Iterator[tuple[Any, Database]]:
    config = server_config(tmp_path, **{"server.metrics_token": TOKEN})
    db = Database(config.server.database_url)
    app = create_app(config, db=db)
    app.config.update(TESTING=True)
    yield app, db
    db.dispose()


def scrape(app: Any) -> dict[str, Any]:
    r = app.test_client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200, r.data
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "Set-Cookie" not in r.headers  # a scraper gets no login cookie
    return parse(r.get_data(as_text=True))


def test_metrics_are_off_without_a_token(app: Any) -> None:
    assert app.test_client().get("/metrics").status_code == 404
    assert app.test_client().get("/metrics", headers={"Authorization": "Bearer "}).status_code == 404


def test_only_the_token_opens_metrics(metered: tuple[Any, Database], as_admin: Any) -> None:
    app, _ = metered
    client = app.test_client()
    assert client.get("/metrics").status_code == 401
    r = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN[:-1]}x"})
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_admin_session_is_not_a_metrics_token(tmp_path: Path) -> None:
    from .conftest import PASSWORD, Browser, make_user

    config = server_config(tmp_path, **{"server.metrics_token": TOKEN})
    db = Database(config.server.database_url)
    app = create_app(config, db=db)
    make_user(db, "ada", "admin")
    browser = Browser(app)
    browser.login("ada", PASSWORD)
    assert browser.get("/metrics").status_code == 401
    db.dispose()


def test_a_short_token_is_refused_at_start(tmp_path: Path) -> None:
    config = server_config(tmp_path, **{"server.metrics_token": "secret"})
    with pytest.raises(ConfigError, match="at least 32"):
        create_app(config)


def test_metrics_follow_ingest_reviews_and_the_fleet(metered: tuple[Any, Database]) -> None:
    app, db = metered
    before = scrape(app)
    assert before["edgeface_server_results_ingested"].type == "counter"
    assert before["edgeface_server_review_backlog"].type == "gauge"
    assert before["edgeface_server_build_info"].type == "gauge"
    assert before["process_cpu_seconds"].type == "counter" and "process_resident_memory_bytes" in before
    assert value(before, "edgeface_server_review_backlog", status="pending") == 0
    stored0 = value(before, "edgeface_server_results_ingested_total", outcome="stored")
    dup0 = value(before, "edgeface_server_results_ingested_total", outcome="duplicate")

    docs = add_results(db, 5)
    DbResultStore(db).add(docs[:2])  # sent again: duplicates
    store = DbResultStore(db)
    store.set_status(payloads.status_payload(device_id="unit-a", state="online", reason="heartbeat", gallery_version=3))
    store.set_status(
        payloads.status_payload(device_id="unit-b", state="offline", reason="connection_lost", gallery_version=4)
    )
    store.set_status(payloads.status_payload(device_id="unit-c", state="online", reason="heartbeat", gallery_version=4))
    with db.write() as conn:
        conn.execute(
            publications.insert().values(
                version=4,
                published_at=time.time(),
                published_by="ada",
                count=1,
                identities=1,
                bytes=1,
                manifest_sha256="0" * 64,
                announced=False,
            )
        )
    after = scrape(app)
    assert value(after, "edgeface_server_results_ingested_total", outcome="stored") == stored0 + 5
    assert value(after, "edgeface_server_results_ingested_total", outcome="duplicate") == dup0 + 2
    assert value(after, "edgeface_server_review_backlog", status="pending") == 5
    assert value(after, "edgeface_server_devices_offline") == 1
    assert value(after, "edgeface_server_devices", state="online") == 2
    assert value(after, "edgeface_server_devices_gallery_behind") == 1  # unit-a reports 3, 4 is published
    assert value(after, "edgeface_server_gallery_version") == 4


# -- a real server: ingest over MQTT, scraped over HTTP -------------------------------------------------


def test_real_server_metrics_over_http(tmp_path: Path) -> None:
    broker = LocalBroker.plain(tmp_path / "broker")
    broker.start()
    port = free_port()
    cfg = write_toml(
        tmp_path / "server.toml",
        {
            "server": {
                "database_url": f"sqlite:///{tmp_path / 'server.sqlite3'}",
                "data_dir": str(tmp_path / "data"),
                "signing_key": str(tmp_path / "keys" / "signing.pem"),
                "port": port,
                "cookie_secure": False,
                "ingest_workers": 1,
                "public_url": f"http://127.0.0.1:{port}",
                "metrics_token": TOKEN,
            },
            "mqtt": {"host": "127.0.0.1", "port": broker.port, "tls": False},
            "ingest": {"client_id": "ingest-metrics-test", "flush_ms": 20.0},
        },
    )
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeface", "--config", str(cfg), "server", "run"], stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}/metrics"

    def get(token: str | None) -> tuple[int, str]:
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, ""

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="unit-m")
    try:
        assert wait_port("127.0.0.1", port, 60), (tmp_path / "server.log").read_text()[-3000:]
        assert get(None)[0] == 401 and get("wrong" * 8)[0] == 401
        code, text = get(TOKEN)
        assert code == 200
        before = parse(text)
        assert value(before, "edgeface_server_results_ingested_total", outcome="stored") == 0
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        rng = random.Random(7)
        for _ in range(6):
            doc = sample_result("unit-m", rng)
            client.publish(topics.results_topic("unit-m"), payloads.encode_result(doc), qos=1).wait_for_publish(10)
        client.publish(topics.results_topic("unit-m"), b"{not json", qos=1).wait_for_publish(10)
        offline = payloads.status_payload(
            device_id="unit-m", state="offline", reason="connection_lost", gallery_version=1
        )
        client.publish(
            topics.status_topic("unit-m"), json.dumps(offline).encode(), qos=1, retain=True
        ).wait_for_publish(10)

        def settled() -> bool:
            fams = parse(get(TOKEN)[1])
            return (
                value(fams, "edgeface_server_results_ingested_total", outcome="stored") == 6
                and value(fams, "edgeface_server_results_ingested_total", outcome="rejected") == 1
                and value(fams, "edgeface_server_devices_offline") == 1
            )

        assert wait_for(settled, 60), (tmp_path / "server.log").read_text()[-3000:]
        after = parse(get(TOKEN)[1])
        assert value(after, "edgeface_server_review_backlog", status="pending") == 6
        assert after["edgeface_server_results_ingested"].type == "counter"
        (build,) = after["edgeface_server_build_info"].samples
        assert build.value == 1 and build.labels["version"]
        assert value(after, "process_cpu_seconds_total") > 0
    finally:
        client.loop_stop()
        client.disconnect()
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        broker.kill()
