"""The ``[doctor]`` section: limits and run lengths of ``edgeface doctor``'s checks. Assembled into
:class:`edgeface.config.Config` by the config package."""

from __future__ import annotations

from dataclasses import dataclass

from ..config.fields import setting


@dataclass(frozen=True)
class DoctorConfig:
    """``edgeface doctor``: how long its checks run and where they draw the line between ok, warn and fail."""

    inference_runs: int = setting(
        10, "Timed runs of each model on the bundled sample photo (after one warm-up run); the median is shown.", min=1
    )
    camera_frames: int = setting(3, "Frames a camera must deliver for the camera check to pass.", min=1, max=100)
    camera_timeout_s: float = setting(
        10.0, "Time a camera has to open and deliver camera_frames frames.", min=0.5, max=300
    )
    disk_warn_free_mb: int = setting(
        1024, "Warn when the file system of run.state_dir has less free space than this (MiB).", min=0
    )
    disk_fail_free_mb: int = setting(
        128,
        "Fail when it has less than this (MiB): the outbox refuses new results on a full disk.",
        min=0,
    )
    service: str = setting(
        "edgeface.service", "The systemd unit whose watchdog is checked (firmware/systemd/edgeface.service)."
    )
