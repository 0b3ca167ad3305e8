"""The clock: not before what this unit knows has already happened, and whether a time server set it.

A Raspberry Pi has no battery-backed clock: after a power cut offline it may start at the last saved
time or in 1970, and every result then carries a wrong capture time and signed pointers look unexpired
(or expired) when they are not. Lower bounds on "now": the creation time of the sample gallery shipped
in this release (signed at build time), the installed gallery's creation time (signed by the central
server), and the last times this unit itself recorded (status.json, the last gallery sync).
"""

from __future__ import annotations

import calendar
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .report import Check

if TYPE_CHECKING:
    from ..config import Config

SAMPLE_MANIFEST = Path(__file__).resolve().parent.parent / "_sample" / "gallery" / "manifest.json"
SLACK_S = 300.0  # the central server's clock and this one may disagree by a few minutes


def _utc(text: Any) -> float | None:
    try:
        return float(calendar.timegm(time.strptime(str(text), "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return None


def _json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def floors(config: Config) -> list[tuple[str, float]]:
    """Moments that have certainly passed, with what they are."""
    from ..daemon.status import gallery_info, status_path

    out: list[tuple[str, float]] = []
    built = _utc(_json(SAMPLE_MANIFEST).get("created"))
    if built is not None:
        out.append(("this release was built (its sample gallery)", built))
    try:
        g = gallery_info(config)
    except (OSError, ValueError):
        g = {}
    if g.get("installed") and _utc(g.get("created")) is not None:
        out.append((f"the installed gallery v{g['version']} was signed", float(_utc(g["created"]) or 0)))
    for label, value in (
        ("the daemon last wrote its status", _json(status_path(config)).get("updated_at")),
        ("the last gallery sync check", _json(Path(config.gallery.dir) / "sync-state.json").get("last_check")),
    ):
        if isinstance(value, (int, float)) and value > 0:
            out.append((label, float(value)))
    return out


def ntp_state() -> tuple[bool | None, str]:
    """(synchronised?, how it was found): None when it cannot be told (no timedatectl, no systemd)."""
    exe = shutil.which("timedatectl")
    if exe is None:
        return None, "no timedatectl"
    try:
        r = subprocess.run([exe, "show", "-p", "NTPSynchronized", "--value"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"timedatectl failed ({e})"
    value = r.stdout.strip()
    if r.returncode != 0 or value not in ("yes", "no"):
        why = (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[0]
        if "not been booted with systemd" in why:
            why = "systemd is not running here"
        return None, f"timedatectl cannot tell: {why}"
    return value == "yes", "timedatectl"


def clock_check(config: Config, now: float | None = None, ntp: tuple[bool | None, str] | None = None) -> Check:
    now = time.time() if now is None else now
    synced, how = ntp_state() if ntp is None else ntp
    shown = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))
    known = floors(config)
    detail: dict[str, Any] = {
        "now": shown,
        "ntp_synchronized": synced,
        "ntp_source": how,
        "floors": {label: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) for label, t in known},
    }
    behind = [(label, t) for label, t in known if now < t - SLACK_S]
    if behind:
        label, t = max(behind, key=lambda x: x[1])
        return Check(
            "clock",
            "fail",
            f"{shown} is before {label} ({time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(t))})",
            "set the clock (timedatectl set-time, or an RTC / GPS / NTP source); results carry this clock's times",
            detail,
        )
    ntp_text = {True: "NTP synchronised", False: "not NTP-synchronised", None: f"NTP state unknown ({how})"}[synced]
    floor_text = f", after {max(known, key=lambda x: x[1])[0]}" if known else ""
    summary = f"{shown}{floor_text}; {ntp_text}"
    if synced is False:
        return Check(
            "clock",
            "warn",
            summary,
            "no time server confirmed this clock (expected while offline): check it against a watch once; "
            "an RTC or GPS keeps it across power cuts",
            detail,
        )
    return Check("clock", "ok", summary, detail=detail)
