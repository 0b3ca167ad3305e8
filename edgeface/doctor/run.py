"""All of the doctor's checks, in the order a technician reads them, each isolated from the others."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..logs import get_logger
from .report import Check

if TYPE_CHECKING:
    from ..config import Config

log = get_logger(__name__)


def _groups() -> dict[str, Callable[[Config], list[Check]]]:
    from .broker import broker_check
    from .camera import camera_check
    from .clock import clock_check
    from .disk import disk_check
    from .gallery import gallery_check
    from .models import model_checks
    from .versions import packages_check, python_check
    from .watchdog import watchdog_check

    return {
        "python": lambda c: [python_check(), packages_check()],
        "models": model_checks,
        "camera": lambda c: [camera_check(c)],
        "clock": lambda c: [clock_check(c)],
        "disk": lambda c: [disk_check(c)],
        "gallery": lambda c: [gallery_check(c)],
        "broker": lambda c: [broker_check(c)],
        "watchdog": lambda c: [watchdog_check(c.doctor.service)],
    }


GROUPS = ("python", "models", "camera", "clock", "disk", "gallery", "broker", "watchdog")


def run_checks(config: Config, only: Sequence[str] = ()) -> list[Check]:
    """Run every group (or those in ``only``); a group that crashes is one failed line, the others still run."""
    out: list[Check] = []
    for name, fn in _groups().items():
        if only and name not in only:
            continue
        t0 = time.monotonic()
        try:
            checks = fn(config)
        except Exception as e:  # noqa: BLE001 - a technician must see every other check even if one has a bug
            log.error("doctor.check_crashed", group=name, error=repr(e))
            checks = [Check(name, "fail", f"the check itself failed: {type(e).__name__}: {e}", "report this as a bug")]
        log.debug("doctor.group", group=name, ms=round((time.monotonic() - t0) * 1000, 1))
        out.extend(checks)
    return out
