"""The OpenCV source: USB cameras (V4L2), RTSP/HTTP streams, GStreamer pipelines, video files.

A live device is read by its own thread that keeps only the newest frame, so the pipeline always
gets a current picture (never one that waited in the driver's buffer) and a slow pipeline never
makes the camera back up. A video file is read frame by frame (nothing dropped): it is how the
benchmarks and tests feed a known stream.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CaptureError, SourceUnavailable
from ..logs import get_logger
from .base import EndOfSource, Frame, Source
from .settings import CaptureOpenCVConfig

log = get_logger(__name__)

URL = re.compile(r"^(rtsp|rtsps|rtmp|http|https|udp|tcp)://", re.IGNORECASE)


def classify(device: str) -> str:
    """'index', 'v4l2' (/dev/videoN), 'url', 'gstreamer' (a pipeline string) or 'file'."""
    d = device.strip()
    if d.isdigit():
        return "index"
    if d.startswith("/dev/"):
        return "v4l2"
    if URL.match(d):
        return "url"
    if "!" in d:
        return "gstreamer"
    return "file"


def has_gstreamer(cv2: Any) -> bool:
    info = cv2.getBuildInformation()
    m = re.search(r"GStreamer:\s*(\S+)", info)
    return bool(m and m.group(1).upper() not in ("NO", "OFF"))


class OpenCVSource(Source):
    """``capture.opencv.device``: see :func:`classify` for the kinds it accepts."""

    kind = "opencv"

    def __init__(self, config: CaptureOpenCVConfig, name: str = "") -> None:
        self.cfg = config
        self.target = classify(config.device)
        default = (
            f"cam{config.device}"
            if self.target == "index"
            else (Path(config.device).name if self.target in ("v4l2", "file") else self.target)
        )
        super().__init__(name or default)
        self.live = self.target != "file"  # instance attribute: a file waits, a camera drops
        self._cap: Any = None
        self._reader: threading.Thread | None = None
        self._latest: tuple[np.ndarray, float, int] | None = None
        self._latest_n = 0
        self._returned_n = 0
        self._cond = threading.Condition()
        self._failed: str | None = None
        self._stop = threading.Event()

    def open(self) -> None:
        import cv2

        device = self.cfg.device.strip()
        if self.target == "gstreamer" and not has_gstreamer(cv2):
            raise CaptureError(
                "capture.opencv.device is a GStreamer pipeline, but this OpenCV was built without GStreamer "
                "(pip's opencv-python-headless is). On a Jetson use JetPack's OpenCV (python3-opencv, in a "
                "virtual environment made with --system-site-packages; see firmware/jetson/README.md)."
            )
        if self.target == "file" and not Path(device).is_file():
            raise SourceUnavailable(f"capture.opencv.device = {device!r}: no such video file; retrying")
        api = {
            "index": cv2.CAP_ANY,
            "v4l2": cv2.CAP_V4L2,
            "url": cv2.CAP_FFMPEG,
            "gstreamer": cv2.CAP_GSTREAMER,
            "file": cv2.CAP_ANY,
        }[self.target]
        arg: Any = int(device) if self.target == "index" else device
        cap = cv2.VideoCapture(arg, api)
        if not cap.isOpened():
            cap.release()
            hint = {
                "index": "check the camera is plugged in (ls /dev/video*) and the service user is in group 'video'",
                "v4l2": "check the device exists and the service user is in group 'video' (and DeviceAllow)",
                "url": "check the address, credentials in the URL, and that the unit can reach the camera",
                "gstreamer": "run the pipeline with gst-launch-1.0 to see GStreamer's own error",
                "file": "check it is a video file OpenCV's FFmpeg can decode",
            }[self.target]
            raise SourceUnavailable(f"capture.opencv.device = {device!r} cannot be opened: {hint}; retrying")
        if self.target != "file":
            if self.cfg.fourcc:
                cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*self.cfg.fourcc[:4].ljust(4)))
            if self.cfg.width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.cfg.width)
            if self.cfg.height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.cfg.height)
            if self.cfg.camera_fps:
                cap.set(cv2.CAP_PROP_FPS, self.cfg.camera_fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._cap = cap
        self._failed = None
        self._latest = None
        self._latest_n = self._returned_n = 0
        if self.live:
            self._stop.clear()
            self._reader = threading.Thread(target=self._read_loop, name=f"edgeface-capture-{self.name}", daemon=True)
            self._reader.start()
        log.info(
            "capture.opencv.open",
            device=device,
            target=self.target,
            live=self.live,
            width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )

    def _read_loop(self) -> None:
        """Live devices: keep only the newest frame."""
        import cv2

        cap = self._cap
        while not self._stop.is_set():
            ok, bgr = cap.read()
            if not ok or bgr is None:
                with self._cond:
                    self._failed = "the camera stopped delivering frames (unplugged, or the stream ended)"
                    self._cond.notify_all()
                return
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            with self._cond:
                self._latest_n += 1
                self._latest = (rgb, time.time(), self._latest_n)
                self._cond.notify_all()

    def read(self, timeout: float) -> Frame | None:
        if self._cap is None:
            raise SourceUnavailable("the camera is not open")
        if not self.live:
            return self._read_file()
        deadline = time.monotonic() + min(timeout, self.cfg.read_timeout_s)
        with self._cond:
            while self._latest_n == self._returned_n and self._failed is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            if self._failed is not None:
                raise SourceUnavailable(f"capture.opencv.device = {self.cfg.device!r}: {self._failed}")
            if self._latest is None or self._latest_n == self._returned_n:
                if timeout >= self.cfg.read_timeout_s:
                    raise SourceUnavailable(
                        f"capture.opencv.device = {self.cfg.device!r}: no frame for "
                        f"{self.cfg.read_timeout_s} s (capture.opencv.read_timeout_s)"
                    )
                return None
            image, at, n = self._latest
            self._returned_n = n
        return Frame(
            source=self.name, key=f"{self.name}:{int(at * 1e6)}:{n}", captured_at=at, seq=self.next_seq(), image=image
        )

    def _read_file(self) -> Frame:
        import cv2

        ok, bgr = self._cap.read()
        if (not ok or bgr is None) and self.cfg.loop:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, bgr = self._cap.read()
        if not ok or bgr is None:
            raise EndOfSource(f"end of video file {self.cfg.device}")
        seq = self.next_seq()
        at = time.time()
        return Frame(
            source=self.name,
            key=f"{self.name}:{int(at * 1e6)}:{seq}",
            captured_at=at,
            seq=seq,
            image=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB),
        )

    def close(self) -> None:
        self._stop.set()
        cap, self._cap = self._cap, None
        if self._reader is not None:
            self._reader.join(timeout=5)
            self._reader = None
        if cap is not None:
            cap.release()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "device": self.cfg.device, "target": self.target}
