"""`edgeface trigger` against a running daemon in trigger mode: it exits 0 naming the pid it signalled, and
the daemon takes a frame and makes a result only then (the failure path is in test_daemon_process.py)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
from daemon_helpers import edgeface_child, wait_child
from sample_photos import SAMPLE_PHOTOS

from edgeface.daemon import status as status_mod
from edgeface.outbox import Outbox
from edgeface.vision.imageio import load_image


def _video_of_a_face(path: Path, frames: int = 5) -> Path:
    rgb = load_image(SAMPLE_PHOTOS[0])
    h, w = rgb.shape[:2]
    size = (w // 2 * 2, h // 2 * 2)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, size)
    assert out.isOpened()
    for _ in range(frames):
        out.write(cv2.cvtColor(rgb[: size[1], : size[0]], cv2.COLOR_RGB2BGR))
    out.release()
    return path


def _results(outbox: Path) -> int:
    if not outbox.exists():
        return 0
    with Outbox(outbox) as box:
        return len(box.pending_ids())


def test_trigger_takes_a_picture_on_a_running_daemon(make_unit: Callable[..., Any], tmp_path: Path) -> None:
    video = _video_of_a_face(tmp_path / "face.avi")
    config, path = make_unit(
        capture={"source": "opencv", "mode": "trigger", "triggers": ["signal"], "frames_per_trigger": 1},
        **{"capture.opencv": {"device": str(video), "loop": True}},
    )
    outbox = Path(config.outbox.path)
    child = edgeface_child(["--config", str(path), "run"], tmp_path / "run.log")
    child.start()
    try:
        doc: dict[str, Any] = {}

        def running() -> bool:
            doc.update(status_mod.read_status(status_mod.status_path(config)) or {})
            return status_mod.daemon_state(doc) == "running"

        assert wait_child(child, running, 60), child.log_tail()
        assert _results(outbox) == 0  # trigger mode: no frame taken yet
        r = subprocess.run(
            [sys.executable, "-m", "edgeface", "--config", str(path), "trigger"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == f"triggered pid {doc['pid']}" and "warning" not in r.stderr
        assert wait_child(child, lambda: _results(outbox) >= 1, 60), child.log_tail()
        assert child.stop(60) == 0
    finally:
        child.kill()
    assert _results(outbox) == 1  # one trigger, one frame, one face
