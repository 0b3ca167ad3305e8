"""Free space where the unit keeps its state (outbox, gallery, progress): a full disk stops new results."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .report import Check

if TYPE_CHECKING:
    from ..config import Config

MIB = 1024 * 1024


def _mib(n: float) -> str:
    return f"{n / MIB / 1024:.1f} GiB" if n >= 1024 * MIB else f"{n / MIB:.0f} MiB"


def disk_check(config: Config) -> Check:
    from ..daemon.status import disk_info

    try:
        d = disk_info(config)
    except OSError as e:
        return Check("disk", "fail", f"cannot read the file system of {config.run.state_dir}: {e}", "check the mount")
    free, total = int(d["free_bytes"]), int(d["total_bytes"])
    used = d["edgeface_bytes"]
    summary = (
        f"{_mib(free)} free of {_mib(total)} on {d['path']} (run.state_dir {config.run.state_dir}); "
        f"edgeface uses {_mib(sum(used.values()))}"
    )
    doc = config.doctor
    if free < doc.disk_fail_free_mb * MIB:
        return Check(
            "disk",
            "fail",
            summary + f", below doctor.disk_fail_free_mb = {doc.disk_fail_free_mb}",
            "free space (old media in retention.dir, logs) or use a larger card; the outbox refuses results on a "
            "full disk",
            d,
        )
    if free < doc.disk_warn_free_mb * MIB:
        return Check(
            "disk",
            "warn",
            summary + f", below doctor.disk_warn_free_mb = {doc.disk_warn_free_mb}",
            "free space before the outbox needs it",
            d,
        )
    return Check("disk", "ok", summary, detail=d)
