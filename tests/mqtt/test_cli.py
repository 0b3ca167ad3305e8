"""The command line: outbox status, configuration errors that name the key."""

from __future__ import annotations

import json
import random
from pathlib import Path

from click.testing import CliRunner

from edgeface.cli import cli
from edgeface.cli.app import human_bytes
from edgeface.config import load_config
from edgeface.outbox import Outbox

from .conftest import fill


def test_outbox_status_json(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    box = Outbox(path)
    fill(box, "unit-a", 7, random.Random(1))
    box.close()
    r = CliRunner().invoke(cli, ["--set", f"outbox.path={path}", "outbox", "status", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output.strip().splitlines()[-1])
    assert doc["pending"] == 7 and doc["enqueued"] == 7
    assert sum(v["rows"] for v in doc["by_priority"].values()) == 7
    r = CliRunner().invoke(cli, ["--set", f"outbox.path={path}", "outbox", "status"])
    assert r.exit_code == 0 and "7 pending" in r.output
    # sizes read as in `edgeface status` (KiB), not raw byte counts
    assert f"{human_bytes(doc['bytes'])} (limits" in r.output and " KiB" in r.output
    assert f"{doc['bytes']} bytes" not in r.output


def test_outbox_status_without_an_outbox_says_so(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["--set", f"outbox.path={tmp_path / 'none.sqlite3'}", "outbox", "status"])
    assert r.exit_code != 0 and "no outbox" in r.output


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["--set", "mqtt.protocol=mqtt4", "config", "check"])
    assert r.exit_code == 2 and "mqtt.protocol" in r.output and "mqtt311" in r.output
    r = CliRunner().invoke(cli, ["--set", "outbox.on_full=drop_everything", "config", "check"])
    assert r.exit_code == 2 and "outbox.on_full" in r.output
    r = CliRunner().invoke(cli, ["--set", "mqtt.inflight=0", "config", "check"])
    assert r.exit_code == 2 and "mqtt.inflight" in r.output
    r = CliRunner().invoke(
        cli,
        [
            "--set",
            "device.id=bad/id",
            "--set",
            "mqtt.host=localhost",
            "--set",
            f"outbox.path={tmp_path / 'o.sqlite3'}",
            "outbox",
            "drain",
        ],
    )
    assert r.exit_code == 2 and "device.id" in r.output
    r = CliRunner().invoke(cli, ["--set", f"outbox.path={tmp_path / 'o.sqlite3'}", "outbox", "drain"])
    assert r.exit_code == 2 and "mqtt.host" in r.output


def test_environment_overrides_mqtt_settings() -> None:
    cfg = load_config(
        env={"EDGEFACE_MQTT__HOST": "broker.example", "EDGEFACE_MQTT__INFLIGHT": "32", "EDGEFACE_DEVICE__ID": "unit-7"}
    )
    assert cfg.mqtt.host == "broker.example" and cfg.mqtt.inflight == 32 and cfg.device.id == "unit-7"
