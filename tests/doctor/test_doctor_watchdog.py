"""The watchdog line: the project's own unit file passes, a unit without WatchdogSec or not Type=notify fails
(drop-ins count, as systemd reads them), and a process started by systemd reads its own environment."""

from __future__ import annotations

import shutil
from pathlib import Path

from edgeface.doctor.watchdog import timespan_s, watchdog_check

UNIT_FILE = Path(__file__).resolve().parents[2] / "firmware" / "systemd" / "edgeface.service"


def test_the_shipped_unit_file_has_a_watchdog(tmp_path: Path) -> None:
    shutil.copy(UNIT_FILE, tmp_path / "edgeface.service")
    c = watchdog_check("edgeface.service", env={}, unit_dirs=[tmp_path], systemd_running=False)
    assert c.status == "ok" and "Type=notify, WatchdogSec=60s" in c.summary and str(tmp_path) in c.summary


def test_a_unit_without_watchdogsec_fails_and_a_drop_in_can_set_it(tmp_path: Path) -> None:
    text = UNIT_FILE.read_text().replace("WatchdogSec=60s\n", "")
    (tmp_path / "edgeface.service").write_text(text)
    c = watchdog_check("edgeface.service", env={}, unit_dirs=[tmp_path], systemd_running=False)
    assert c.status == "fail" and "no WatchdogSec" in c.summary and "firmware/systemd" in c.advice
    (tmp_path / "edgeface.service.d").mkdir()
    (tmp_path / "edgeface.service.d" / "watchdog.conf").write_text("[Service]\nWatchdogSec=1min 30s\n")
    c = watchdog_check("edgeface.service", env={}, unit_dirs=[tmp_path], systemd_running=False)
    assert c.status == "ok" and "WatchdogSec=90s" in c.summary


def test_a_simple_service_has_no_watchdog(tmp_path: Path) -> None:
    (tmp_path / "edgeface.service").write_text(UNIT_FILE.read_text().replace("Type=notify", "Type=simple"))
    c = watchdog_check("edgeface.service", env={}, unit_dirs=[tmp_path], systemd_running=False)
    assert c.status == "fail" and "Type=simple" in c.summary


def test_under_systemd_the_environment_says_it(tmp_path: Path) -> None:
    c = watchdog_check("edgeface.service", env={"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "60000000"})
    assert c.status == "ok" and "WatchdogSec=60s" in c.summary
    c = watchdog_check("edgeface.service", env={"NOTIFY_SOCKET": "/run/systemd/notify"})
    assert c.status == "fail"


def test_no_systemd_and_no_unit_is_not_applicable(tmp_path: Path) -> None:
    c = watchdog_check("edgeface.service", env={}, unit_dirs=[tmp_path], systemd_running=False)
    assert c.status == "skip" and "nothing supervises the daemon" in c.summary


def test_systemd_time_spans() -> None:
    assert timespan_s("60s") == 60 and timespan_s("1min 30s") == 90 and timespan_s("500ms") == 0.5
    assert timespan_s("90") == 90 and timespan_s("0") == 0 and timespan_s("infinity") == 0
    assert timespan_s("3 fortnights") is None
