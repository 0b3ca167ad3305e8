"""systemd's watchdog: the service is ``Type=notify`` with a ``WatchdogSec``, so a hung daemon is killed
and restarted (the daemon feeds it only while every stage makes progress; daemon/supervisor.py).

Asked in this order: the environment, when the doctor itself runs under systemd (``$NOTIFY_SOCKET``,
``$WATCHDOG_USEC``); ``systemctl show`` when systemd runs this machine; else the installed unit file
(a container or a chroot, as in an image build), read as systemd would read its main settings.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .report import Check

UNIT_DIRS = (
    Path("/etc/systemd/system"),
    Path("/run/systemd/system"),
    Path("/usr/lib/systemd/system"),
    Path("/lib/systemd/system"),
)
UNITS_S = {
    "us": 1e-6,
    "usec": 1e-6,
    "ms": 1e-3,
    "msec": 1e-3,
    "s": 1.0,
    "sec": 1.0,
    "": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
}
FIX = "the unit needs Type=notify and WatchdogSec= (firmware/systemd/edgeface.service has both)"


def timespan_s(text: str) -> float | None:
    """A systemd time span (``60s``, ``1min 30s``, ``90``) in seconds; 0 for off ('0', 'infinity', '')."""
    text = text.strip()
    if text in ("", "0", "infinity"):
        return 0.0
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text):
        if unit not in UNITS_S:
            return None
        total += float(number) * UNITS_S[unit]
    return total


def read_unit(path: Path) -> dict[str, str]:
    """The ``[Service]`` settings of a unit file and its drop-ins (``<unit>.d/*.conf``), last one winning."""
    out: dict[str, str] = {}
    files = [path, *sorted(path.parent.glob(f"{path.name}.d/*.conf"))]
    for f in files:
        section = ""
        for raw in f.read_text(encoding="utf-8", errors="replace").splitlines():
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                section = line.strip("[]")
            elif section == "Service" and "=" in line:
                key, _, value = line.partition("=")
                out[key.strip()] = value.strip()
    return out


def _judge(service: str, kind: str, watchdog_s: float | None, where: str, extra: str = "") -> Check:
    detail = {"service": service, "type": kind, "watchdog_s": watchdog_s, "from": where}
    if kind != "notify":
        return Check("watchdog", "fail", f"{service}: Type={kind or 'simple'}, so no watchdog ({where})", FIX, detail)
    if not watchdog_s:
        return Check("watchdog", "fail", f"{service}: Type=notify but no WatchdogSec ({where})", FIX, detail)
    return Check(
        "watchdog", "ok", f"{service}: Type=notify, WatchdogSec={watchdog_s:g}s{extra} ({where})", detail=detail
    )


def watchdog_check(
    service: str,
    env: Mapping[str, str] | None = None,
    unit_dirs: Sequence[Path] = UNIT_DIRS,
    systemd_running: bool | None = None,
) -> Check:
    env = os.environ if env is None else env
    if env.get("NOTIFY_SOCKET"):
        usec = env.get("WATCHDOG_USEC", "")
        seconds = int(usec) / 1e6 if usec.isdigit() else 0.0
        return _judge(service, "notify", seconds, "this process runs under systemd: $NOTIFY_SOCKET, $WATCHDOG_USEC")
    if systemd_running is None:
        systemd_running = Path("/run/systemd/system").is_dir()
    exe = shutil.which("systemctl")
    if systemd_running and exe:
        return _from_systemctl(exe, service)
    for d in unit_dirs:
        path = Path(d) / service
        if path.is_file():
            s = read_unit(path)
            return _judge(
                service,
                s.get("Type", "simple"),
                timespan_s(s.get("WatchdogSec", "")),
                f"{path}; systemd is not running here",
            )
    return Check(
        "watchdog",
        "skip",
        f"systemd is not running here and no {service} is installed: nothing supervises the daemon",
        detail={"searched": [str(d) for d in unit_dirs]},
    )


def _from_systemctl(exe: str, service: str) -> Check:
    props = ("LoadState", "ActiveState", "Type", "WatchdogUSec", "NotifyAccess")
    try:
        r = subprocess.run(
            [exe, "show", service, "--no-pager", *(f"--property={p}" for p in props)],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return Check("watchdog", "fail", f"systemctl show {service} failed: {e}", "check systemd")
    got: dict[str, Any] = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    if r.returncode != 0 or got.get("LoadState") in (None, "not-found"):
        return Check(
            "watchdog",
            "warn",
            f"{service} is not installed: nothing supervises the daemon",
            "install firmware/systemd/edgeface.service (firmware/README.md)",
            got,
        )
    return _judge(
        service,
        str(got.get("Type", "")),
        timespan_s(str(got.get("WatchdogUSec", ""))),
        "systemctl show",
        f", {got.get('ActiveState')}",
    )
