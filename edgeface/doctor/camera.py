"""The configured capture source: opened as the daemon opens it, and it must deliver frames.

A folder source is not a camera (photos are copied in): its line says so and checks the folder is
there. A camera the running daemon holds is not opened a second time (it would be busy): the line
reports the daemon's own view of it instead.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import EdgefaceError
from .report import Check
from .unit_state import running_daemon

if TYPE_CHECKING:
    from ..capture.base import Source
    from ..config import Config


def camera_check(config: Config) -> Check:
    cap = config.capture
    if cap.source == "folder":
        return _folder(cap.folder.path)
    daemon = running_daemon(config)
    if daemon is not None and daemon.get("source"):
        return _from_daemon(daemon)
    from ..capture import make_source

    try:
        source = make_source(config)
    except (EdgefaceError, ValueError) as e:
        return Check("camera", "fail", f"capture.source = {cap.source!r} cannot be set up: {e}", _ADVICE[cap.source])
    return read_frames(source, config.doctor.camera_frames, config.doctor.camera_timeout_s)


_ADVICE = {
    "opencv": "check capture.opencv.device; `ls /dev/video*` lists the cameras the system sees",
    "picamera2": "`rpicam-hello --list-cameras` shows what libcamera sees; check the ribbon cable",
}


def _folder(path: Path) -> Check:
    detail = {"source": "folder", "path": str(path)}
    if not path.is_dir():
        return Check(
            "camera",
            "warn",
            f"folder source {path}: not a camera, and the folder does not exist",
            "create it or mount the card there (capture.folder.path); the daemon waits for it",
            detail,
        )
    return Check("camera", "skip", f"folder source {path}: not a camera (photos are copied in)", detail=detail)


def _from_daemon(doc: dict[str, Any]) -> Check:
    src = doc["source"]
    rate = (doc.get("rates") or {}).get("frames_per_s")
    what = f"{src.get('kind')} {src.get('name')}, held by the running daemon (pid {doc.get('pid')})"
    detail = {"source": src, "frames_per_s": rate, "from": "status.json"}
    if not src.get("up"):
        return Check(
            "camera",
            "fail",
            f"{what}: down (reopened {src.get('reopens', 0)}x)",
            "see `journalctl -u edgeface` for the camera's error",
            detail,
        )
    return Check("camera", "ok", f"{what}: up, {rate or 0:.2f} frames/s processed (the daemon's figure)", detail=detail)


def read_frames(source: Source, frames: int, timeout_s: float) -> Check:
    """Open ``source`` and read until it delivered ``frames`` frames or ``timeout_s`` passed."""
    from ..capture import EndOfSource

    desc: dict[str, Any] = dict(source.describe())
    label = f"{source.kind} {source.name}"
    if desc.get("target") == "file":
        label += " (a video file, not a camera)"
    got, shape, t0 = 0, None, time.monotonic()
    deadline = t0 + timeout_s
    try:
        source.open()
        while got < frames and time.monotonic() < deadline:
            frame = source.read(timeout=max(0.05, deadline - time.monotonic()))
            if frame is None or frame.image is None:
                continue
            got += 1
            shape = frame.image.shape
    except EndOfSource:
        pass
    except EdgefaceError as e:
        return Check("camera", "fail", f"{label}: {e}", _ADVICE.get(source.kind, ""), desc)
    finally:
        source.close()
    elapsed = time.monotonic() - t0
    desc.update(frames=got, seconds=round(elapsed, 2))
    if got < frames:
        return Check(
            "camera",
            "fail",
            f"{label}: opened, but delivered {got} of {frames} frames in {timeout_s:g} s",
            _ADVICE.get(source.kind, ""),
            desc,
        )
    assert shape is not None
    desc["size"] = [int(shape[1]), int(shape[0])]
    return Check("camera", "ok", f"{label}: {got} frames of {shape[1]}x{shape[0]} in {elapsed:.1f} s", detail=desc)
