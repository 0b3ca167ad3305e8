"""`edgeface run` as a process: SIGTERM drains with nothing lost, kill -9 then restart processes every file
once, systemd notify + watchdog, and a broker that comes up late gets every result once (status and
Prometheus endpoint checked on the way)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import edgeface_child, wait_child
from sample_photos import SAMPLE_PHOTOS, feed

from edgeface.capture.folder import read_ledger
from edgeface.config import Config
from edgeface.daemon.status import status_path
from edgeface.mqtt import Ingest, ResultStore
from edgeface.mqtt.link import LinkSettings
from edgeface.outbox import Outbox
from edgeface.testing.broker import LocalBroker, free_port
from edgeface.testing.mqttload import wait_for

MakeUnit = Callable[..., tuple[Config, Path]]


def ledger_rows(config: Config) -> list[dict[str, Any]]:
    return read_ledger(config.run.state_dir, config.capture.folder.path)


def pending_ids(config: Config) -> list[str]:
    if not Path(config.outbox.path).exists():
        return []
    with Outbox(config.outbox.path) as box:
        return box.pending_ids()


def cli_json(args: list[str]) -> dict[str, Any]:
    """Run ``edgeface ... status --json`` and parse its one object."""
    out = subprocess.run([*args, "--json"], check=False, capture_output=True, text=True, timeout=60).stdout
    return json.loads(out)


def lfw_sample(lfw_people: dict[str, list[Path]], n: int) -> list[Path]:
    """``n`` LFW photos of several people (read in place, never copied into the repository)."""
    out: list[Path] = []
    for name in sorted(lfw_people):
        if len(lfw_people[name]) >= 4:
            out += lfw_people[name][:4]
        if len(out) >= n:
            break
    return out[:n]


def test_sigterm_drains_everything_in_flight(
    make_unit: MakeUnit, tmp_path: Path, lfw_people: dict[str, list[Path]]
) -> None:
    config, path = make_unit(run={"frame_queue": 16})
    photos = feed(Path(config.capture.folder.path), lfw_sample(lfw_people, 40))
    child = edgeface_child(["--config", str(path), "run"], tmp_path / "run.log")
    child.start()
    try:
        assert wait_child(child, lambda: len(pending_ids(config)) >= 2, 60), child.log_tail()
        assert child.proc is not None
        child.proc.send_signal(signal.SIGTERM)
        assert child.proc.wait(60) == 0, child.log_tail()
    finally:
        child.kill()
    rows = ledger_rows(config)
    assert [r for r in rows if r["status"] == "processing"] == []  # nothing handed out was left unfinished
    done = [r for r in rows if r["status"] == "done"]
    assert done and len(done) <= len(photos)
    assert sorted(i for r in done for i in r["results"]) == sorted(pending_ids(config))  # and all are stored
    assert "daemon.stopped" in child.log_path.read_text()


def test_kill_9_mid_run_then_restart_processes_every_file_once(
    make_unit: MakeUnit, tmp_path: Path, lfw_people: dict[str, list[Path]]
) -> None:
    config, path = make_unit(run={"frame_queue": 8})
    inbox = Path(config.capture.folder.path)
    photos = lfw_sample(lfw_people, 36)
    child = edgeface_child(["--config", str(path), "run"], tmp_path / "run.log")
    child.start()
    try:
        # photos arrive while the daemon runs (not while it starts: on a busy machine it could start after
        # the last one arrived, and the kill would not be mid-run)
        assert wait_child(child, status_path(config).exists, 60), child.log_tail()
        # paced by the daemon's progress (at most 6 photos ahead of it), so a slow or loaded machine still
        # has photos left to arrive when the kill comes
        fed, done, deadline = 0, 0, time.monotonic() + 120
        while done < 6 and time.monotonic() < deadline:
            if fed - done < 6 and fed < len(photos):
                names = [f"{fed:03d}.jpg", f"{fed + 1:03d}.jpg"]
                feed(inbox, photos[fed : fed + 2], names, mtime0=time.time() - 60 + fed)
                fed += 2
            time.sleep(0.05)
            done = len([r for r in ledger_rows(config) if r["status"] == "done"])
        assert done >= 6, child.log_tail()
    finally:
        child.kill()  # SIGKILL: no drain, no clean-up
    assert fed < len(photos)  # killed mid-run: photos were still arriving
    feed(inbox, photos[fed:], [f"{i:03d}.jpg" for i in range(fed, len(photos))], mtime0=time.time() - 30)
    again = subprocess.run(
        [sys.executable, "-m", "edgeface", "--config", str(path), "run", "--once", "--json"],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    rows = ledger_rows(config)
    assert len(rows) == len(photos) and {r["status"] for r in rows} == {"done"}
    ids = pending_ids(config)
    faces = sum(int(r["faces"]) for r in rows)
    assert len(ids) == len(set(ids)) == faces  # one result per face: nothing twice, nothing missed
    assert sorted(ids) == sorted(i for r in rows for i in r["results"])


def test_systemd_notify_ready_watchdog_stopping(make_unit: MakeUnit, tmp_path: Path) -> None:
    config, path = make_unit()
    feed(Path(config.capture.folder.path), SAMPLE_PHOTOS[:1])
    sock_path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(0.5)
    messages: list[str] = []

    def receive_until(want: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                messages.extend(sock.recv(4096).decode().split("\n"))
            except TimeoutError:
                pass
            if sum(1 for m in messages if m == want) >= (2 if want == "WATCHDOG=1" else 1):
                return True
        return False

    child = edgeface_child(
        ["--config", str(path), "run"],
        tmp_path / "run.log",
        env={"NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "900000"},
    )
    child.start()
    try:
        assert receive_until("READY=1", 60), child.log_tail()
        assert receive_until("WATCHDOG=1", 30)  # pinged while every stage is healthy
        assert child.stop(60) == 0
        assert receive_until("STOPPING=1", 5)
    finally:
        child.kill()
        sock.close()
    assert any(m.startswith("STATUS=") for m in messages)


def test_late_broker_gets_every_result_once_status_and_metrics(make_unit: MakeUnit, tmp_path: Path) -> None:
    port, metrics_port = free_port(), free_port()
    config, path = make_unit(
        mqtt={
            "host": "127.0.0.1",
            "port": port,
            "tls": False,
            "reconnect_min_s": 0.05,
            "reconnect_max_s": 0.3,
            "heartbeat_s": 1.0,
        },
        status={"metrics_port": metrics_port, "interval_s": 0.2},
    )
    feed(Path(config.capture.folder.path), SAMPLE_PHOTOS)
    child = edgeface_child(["--config", str(path), "run"], tmp_path / "run.log")
    broker = LocalBroker.plain(tmp_path / "broker", port=port)
    store = ResultStore(tmp_path / "central.sqlite3")
    ingest = None
    env_cli = [sys.executable, "-m", "edgeface", "--config", str(path), "status"]
    child.start()
    try:
        assert wait_child(child, lambda: len(pending_ids(config)) == 4, 60), child.log_tail()  # stored offline
        doc = cli_json(env_cli)
        assert doc["daemon"] == "running" and doc["outbox"]["pending"] == 4 and not doc["link"]["connected"]
        broker.start()
        ingest = Ingest(
            store,
            LinkSettings(host="127.0.0.1", port=port, client_id="ingest-test", tls=False),
            reconnect_min_s=0.05,
            reconnect_max_s=0.3,
        )
        ingest.start()
        assert wait_child(child, lambda: store.count() == 4 and not pending_ids(config), 60), child.log_tail()
        assert wait_for(lambda: cli_json(env_cli)["link"]["connected"], 30)
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
        assert "edgeface_mqtt_connected 1.0" in text and 'edgeface_results_total{decision="match"} 2.0' in text
        assert "# TYPE edgeface_frames_processed_total counter" in text
        human = subprocess.run(env_cli, check=False, capture_output=True, text=True, timeout=60)
        assert human.returncode == 0 and "daemon running" in human.stdout and "link        online" in human.stdout
        assert child.stop(60) == 0
    finally:
        child.kill()
        if ingest is not None:
            ingest.stop()
        broker.kill()
    assert ingest is not None and ingest.stats.duplicates == 0 and store.count() == 4
    store.close()
    after = subprocess.run(env_cli, check=False, capture_output=True, text=True, timeout=60)
    assert after.returncode == 3 and "daemon stopped" in after.stdout


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5"])
def test_metrics_endpoint_refuses_non_loopback(host: str) -> None:
    from edgeface.daemon.endpoint import MetricsServer
    from edgeface.errors import ConfigError

    with pytest.raises(ConfigError, match="not a loopback"):
        MetricsServer(host, 0, lambda: "", dict)


def test_edgeface_trigger_needs_a_running_daemon(make_unit: MakeUnit) -> None:
    _, path = make_unit()
    r = subprocess.run(
        [sys.executable, "-m", "edgeface", "--config", str(path), "trigger"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )
    assert r.returncode == 1 and "no running daemon" in r.stderr
