"""The Raspberry Pi camera source (CSI cameras through libcamera's picamera2).

picamera2 is not on PyPI in a form that works outside Raspberry Pi OS: it comes from the OS
(``apt install python3-picamera2``), and edgeface's virtual environment must see it
(``python3 -m venv --system-site-packages``). It is imported when the source opens, never at import
time, and its absence is a :class:`~edgeface.errors.CaptureError` that says so.
"""

from __future__ import annotations

import importlib
import time
from typing import Any

from ..errors import CaptureError, SourceUnavailable
from ..logs import get_logger
from .base import Frame, Source
from .settings import CapturePicamera2Config

log = get_logger(__name__)

MISSING = (
    "capture.source = 'picamera2' needs the picamera2 package, which comes with Raspberry Pi OS: "
    "`sudo apt install python3-picamera2`, and a virtual environment created with --system-site-packages "
    "(firmware/ does both). On other machines use capture.source = 'opencv'."
)

# picamera2's format names follow libcamera/DRM, where "BGR888" is stored R, G, B in memory: the RGB
# array the engine wants, without a conversion.
FORMAT = "BGR888"


class Picamera2Source(Source):
    """``[capture.picamera2]``: one CSI camera, frames as RGB arrays."""

    kind = "picamera2"
    live = True

    def __init__(self, config: CapturePicamera2Config, name: str = "") -> None:
        super().__init__(name or f"picam{config.camera}")
        self.cfg = config
        self._cam: Any = None

    @staticmethod
    def _modules() -> tuple[Any, Any]:
        try:
            picamera2 = importlib.import_module("picamera2")
        except ImportError as e:
            raise CaptureError(f"{MISSING} ({e})") from None
        try:
            libcamera = importlib.import_module("libcamera")
        except ImportError as e:
            raise CaptureError(f"{MISSING} (libcamera's Python module is missing: {e})") from None
        return picamera2, libcamera

    def open(self) -> None:
        picamera2, libcamera = self._modules()
        cams = picamera2.Picamera2.global_camera_info()
        if self.cfg.camera >= len(cams):
            raise SourceUnavailable(
                f"capture.picamera2.camera = {self.cfg.camera} but libcamera sees {len(cams)} camera(s): check the "
                "ribbon cable, and camera_auto_detect=1 (or the sensor's dtoverlay) in /boot/firmware/config.txt; "
                "`rpicam-hello --list-cameras` shows what the system sees. Retrying."
            )
        try:
            cam = picamera2.Picamera2(self.cfg.camera)
            flip = 1 if self.cfg.rotate_180 else 0
            config = cam.create_video_configuration(
                main={"size": (self.cfg.width, self.cfg.height), "format": FORMAT},
                transform=libcamera.Transform(hflip=flip, vflip=flip),
                buffer_count=2,
            )
            cam.configure(config)
            cam.start()
            if self.cfg.autofocus and "AfMode" in getattr(cam, "camera_controls", {}):
                cam.set_controls({"AfMode": libcamera.controls.AfModeEnum.Continuous})
        except (RuntimeError, OSError) as e:  # libcamera reports a busy or failing camera this way
            raise SourceUnavailable(
                f"picamera2 camera {self.cfg.camera} cannot start: {e}; is another process using it? Retrying."
            ) from e
        self._cam = cam
        log.info(
            "capture.picamera2.open",
            camera=self.cfg.camera,
            model=cams[self.cfg.camera].get("Model"),
            width=self.cfg.width,
            height=self.cfg.height,
        )

    def read(self, timeout: float) -> Frame | None:
        if self._cam is None:
            raise SourceUnavailable("the camera is not open")
        try:
            image = self._cam.capture_array("main")
        except (RuntimeError, OSError) as e:
            raise SourceUnavailable(f"picamera2 camera {self.cfg.camera} stopped: {e}") from e
        if image is None or image.ndim != 3 or image.shape[2] < 3:
            raise SourceUnavailable(f"picamera2 camera {self.cfg.camera} returned no usable frame")
        at = time.time()
        seq = self.next_seq()
        return Frame(
            source=self.name, key=f"{self.name}:{int(at * 1e6)}:{seq}", captured_at=at, seq=seq, image=image[:, :, :3]
        )

    def close(self) -> None:
        cam, self._cam = self._cam, None
        if cam is None:
            return
        try:
            cam.stop()
        finally:
            cam.close()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "camera": self.cfg.camera}
