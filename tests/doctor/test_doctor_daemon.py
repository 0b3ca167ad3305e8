"""`edgeface doctor` beside a running daemon (a real `edgeface run` child on a TLS broker, a looping video as
its OpenCV source): the camera and broker lines come from the daemon's status file, and the doctor takes
neither from it: the broker saw one connection as the unit, the daemon's, and it stayed up."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from doctor_helpers import Doctor, mqtt, write_config, write_video

from edgeface.doctor.report import EXIT_OK
from edgeface.testing.broker import LocalBroker
from edgeface.testing.mqttload import Child


def _status(unit: dict[str, Any]) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads((Path(unit["run"]["state_dir"]) / "status.json").read_text())
    except (OSError, ValueError):
        return {}
    return doc


def _wait(cond: Any, child: Child, timeout: float = 90) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and child.alive:
        if cond():
            return True
        time.sleep(0.1)
    return bool(cond())


def test_the_doctor_reports_what_the_running_daemon_holds_without_taking_it(
    doctor: Doctor, unit: dict[str, Any], tls_broker: LocalBroker, pki: dict[str, Path], tmp_path: Path
) -> None:
    unit["mqtt"] = mqtt(tls_broker, pki)
    unit["capture"] = {"source": "opencv", "fps": 2.0}
    unit["capture.opencv"] = {"device": write_video(tmp_path / "clip.avi"), "loop": True}
    unit["status"] = {"interval_s": 0.2, "metrics_port": 0}
    child = Child(["--config", str(write_config(tmp_path / "daemon.toml", unit)), "run"], tmp_path / "run.log")
    child.start()
    try:
        assert _wait(lambda: (_status(unit).get("link") or {}).get("connected"), child), child.log_tail()
        code, checks = doctor(unit, "--only", "camera", "--only", "broker")
        assert code == EXIT_OK, checks
        assert "held by the running daemon" in checks["camera"]["summary"] and "up" in checks["camera"]["summary"]
        assert (
            "held by the running daemon" in checks["broker"]["summary"] and "not probed" in checks["broker"]["summary"]
        )
        time.sleep(1.0)  # a few status intervals: a taken-over session would show as a reconnect by now
        assert _status(unit)["link"]["connected"]
        log = tls_broker.log_path.read_text()
        assert log.count("as unit-a") == 1 and "disconnected" not in log, log  # one connection: the daemon's
        assert child.alive
    finally:
        child.stop(60)
