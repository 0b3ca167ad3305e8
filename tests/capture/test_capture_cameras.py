"""Camera sources: OpenCV against a video file the test writes, picamera2 through a stand-in module with its
API, and the trigger sources (key, GPIO stand-in, signal)."""

from __future__ import annotations

import io
import os
import signal
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import pytest

from edgeface.capture import EndOfSource, TriggerHub
from edgeface.capture.opencv import OpenCVSource, classify
from edgeface.capture.picamera2 import Picamera2Source
from edgeface.capture.settings import CaptureOpenCVConfig, CapturePicamera2Config
from edgeface.errors import CaptureError, SourceUnavailable

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]  # RGB: red, green, blue frames


def write_video(path: Path, frames: int = 6, size: tuple[int, int] = (160, 120)) -> Path:
    """An MJPG AVI whose frames are solid red, green, blue, ... (written as BGR, as OpenCV does)."""
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    assert w.isOpened()
    for i in range(frames):
        rgb = np.zeros((size[1], size[0], 3), np.uint8)
        rgb[:] = COLOURS[i % 3]
        w.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    w.release()
    return path


def dominant(image: np.ndarray) -> int:
    return int(np.argmax(image.reshape(-1, 3).mean(axis=0)))


def test_classify_every_kind_of_device() -> None:
    assert classify("0") == "index"
    assert classify("/dev/video2") == "v4l2"
    assert classify("rtsp://cam.local/stream1") == "url"
    assert classify("https://cam.local/mjpg") == "url"
    assert classify("nvarguscamerasrc ! video/x-raw(memory:NVMM) ! nvvidconv ! appsink") == "gstreamer"
    assert classify("clip.avi") == "file"


def test_video_file_frames_in_order_as_rgb_then_end(tmp_path: Path) -> None:
    src = OpenCVSource(CaptureOpenCVConfig(device=str(write_video(tmp_path / "clip.avi"))))
    assert not src.live  # a file is read frame by frame, nothing dropped
    src.open()
    frames = []
    with pytest.raises(EndOfSource):
        while True:
            frames.append(src.read(timeout=1.0))
    src.close()
    assert len(frames) == 6
    assert [dominant(f.image) for f in frames] == [0, 1, 2, 0, 1, 2]  # RGB order, capture order
    assert [f.seq for f in frames] == list(range(1, 7)) and len({f.key for f in frames}) == 6


def test_video_file_loops_when_asked(tmp_path: Path) -> None:
    src = OpenCVSource(CaptureOpenCVConfig(device=str(write_video(tmp_path / "clip.avi", frames=3)), loop=True))
    src.open()
    got = [dominant(src.read(timeout=1.0).image) for _ in range(7)]  # type: ignore[union-attr]
    src.close()
    assert got == [0, 1, 2, 0, 1, 2, 0]


def test_live_stream_keeps_the_newest_frame_and_reports_its_end(tmp_path: Path) -> None:
    """A live device (here a file opened as a stream by index of kind 'url'-like handling) is read by its own
    thread; when frames stop coming, read() says the camera is lost so the daemon reopens it."""
    src = OpenCVSource(CaptureOpenCVConfig(device=str(write_video(tmp_path / "clip.avi")), read_timeout_s=1.0))
    src.live = True  # treat the file as a live device: its end is the camera going away
    src.open()
    with pytest.raises(SourceUnavailable, match="stopped delivering"):
        for _ in range(100):
            src.read(timeout=1.0)
    src.close()


def test_missing_devices_are_unavailable_and_gstreamer_needs_a_gstreamer_build(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match="no such video file"):
        OpenCVSource(CaptureOpenCVConfig(device=str(tmp_path / "none.avi"))).open()
    with pytest.raises(SourceUnavailable, match="cannot be opened"):
        OpenCVSource(CaptureOpenCVConfig(device="/dev/video99")).open()
    from edgeface.capture.opencv import has_gstreamer

    if not has_gstreamer(cv2):
        with pytest.raises(CaptureError, match="without GStreamer"):
            OpenCVSource(CaptureOpenCVConfig(device="videotestsrc ! appsink")).open()


# -- picamera2 through a stand-in with its API --------------------------------------------------------------


# How picamera2 lays out each format in the array it returns (the Picamera2 manual, "Image formats"; the
# names follow DRM fourcc, little-endian words): "RGB888" is [B, G, R] in memory, "BGR888" is [R, G, B],
# "XRGB8888" [B, G, R, 255], "XBGR8888" [R, G, B, 255]. The stand-in renders the scene the way the
# requested format would, so the test checks the source's choice of format and conversion, not an assumption.
_LAYOUTS = {"RGB888": (2, 1, 0), "BGR888": (0, 1, 2), "XRGB8888": (2, 1, 0), "XBGR8888": (0, 1, 2)}


def _in_memory(scene: np.ndarray, fmt: str) -> np.ndarray:
    if fmt not in _LAYOUTS:
        raise RuntimeError(f"stand-in: format {fmt!r} is not one picamera2 gives as an RGB-family array")
    out = scene[..., list(_LAYOUTS[fmt])]
    if fmt.startswith("X"):
        out = np.concatenate([out, np.full(scene.shape[:2] + (1,), 255, np.uint8)], axis=2)
    return np.ascontiguousarray(out)


class FakePicamera2:
    """The part of picamera2.Picamera2 the source uses, recording calls."""

    cameras: ClassVar[list[dict[str, Any]]] = [{"Model": "imx708", "Num": 0}]
    fail_after: int | None = None
    instances: ClassVar[list[FakePicamera2]] = []

    def __init__(self, num: int) -> None:
        self.num, self.calls, self.frames = num, [], 0
        self.camera_controls = {"AfMode": (0, 2, 0)}
        FakePicamera2.instances.append(self)

    @staticmethod
    def global_camera_info() -> list[dict[str, Any]]:
        return FakePicamera2.cameras

    def create_video_configuration(self, **kw: Any) -> dict[str, Any]:
        self.calls.append(("config", kw))
        return kw

    def configure(self, cfg: Any) -> None:
        self.configured = cfg

    def start(self) -> None:
        self.calls.append(("start",))

    def set_controls(self, c: dict[str, Any]) -> None:
        self.calls.append(("controls", c))

    def capture_array(self, name: str = "main") -> np.ndarray:
        if self.fail_after is not None and self.frames >= self.fail_after:
            raise RuntimeError("Camera frontend has timed out!")
        self.frames += 1
        w, h = self.configured["main"]["size"]
        scene = np.zeros((h, w, 3), np.uint8)
        scene[..., 0] = 200  # the camera sees a red scene (R, G, B)
        return _in_memory(scene, self.configured["main"]["format"])

    def stop(self) -> None:
        self.calls.append(("stop",))

    def close(self) -> None:
        self.calls.append(("close",))


@pytest.fixture
def picamera(fake_modules: Callable[[str, Any], None]) -> type[FakePicamera2]:
    FakePicamera2.instances = []
    FakePicamera2.fail_after = None
    FakePicamera2.cameras = [{"Model": "imx708", "Num": 0}]
    fake_modules("picamera2", types.SimpleNamespace(Picamera2=FakePicamera2))

    def transform(hflip: int = 0, vflip: int = 0) -> tuple[str, int, int]:
        return ("transform", hflip, vflip)

    controls = types.SimpleNamespace(AfModeEnum=types.SimpleNamespace(Continuous=2))
    fake_modules("libcamera", types.SimpleNamespace(Transform=transform, controls=controls))
    return FakePicamera2


def test_picamera2_absent_says_how_to_install_it(fake_modules: Callable[[str, Any], None]) -> None:
    fake_modules("picamera2", None)  # makes `import picamera2` raise ImportError
    with pytest.raises(CaptureError, match="apt install python3-picamera2"):
        Picamera2Source(CapturePicamera2Config()).open()


def test_picamera2_frames_configuration_and_close(picamera: type[FakePicamera2]) -> None:
    src = Picamera2Source(CapturePicamera2Config(width=320, height=240, rotate_180=True))
    src.open()
    frame = src.read(timeout=1.0)
    # red in front of the camera is red in the frame (channel 0 of the RGB image the engine wants)
    assert frame is not None and frame.image.shape == (240, 320, 3) and dominant(frame.image) == 0
    cam = picamera.instances[0]
    cfg = cam.calls[0][1]
    assert cfg["main"] == {"size": (320, 240), "format": "BGR888"} and cfg["transform"] == ("transform", 1, 1)
    assert ("controls", {"AfMode": 2}) in cam.calls  # continuous autofocus where the camera has it
    src.close()
    assert cam.calls[-2:] == [("stop",), ("close",)]
    assert src.name == "picam0"


def test_picamera2_missing_camera_and_failing_camera_are_unavailable(picamera: type[FakePicamera2]) -> None:
    picamera.cameras = []
    with pytest.raises(SourceUnavailable, match="sees 0 camera"):
        Picamera2Source(CapturePicamera2Config()).open()
    picamera.cameras = [{"Model": "imx477", "Num": 0}]
    picamera.fail_after = 1
    src = Picamera2Source(CapturePicamera2Config(width=64, height=64))
    src.open()
    assert src.read(timeout=1.0) is not None
    with pytest.raises(SourceUnavailable, match="timed out"):
        src.read(timeout=1.0)
    src.close()


# -- triggers -------------------------------------------------------------------------------------------------


def test_trigger_hub_key_signal_and_gpio(fake_modules: Callable[[str, Any], None]) -> None:
    hub = TriggerHub()
    assert hub.wait(0.01) is None
    hub.add_key(io.StringIO("\n\n"))
    assert [hub.wait(2.0), hub.wait(2.0)] == ["key", "key"]

    before = signal.getsignal(signal.SIGUSR1)
    hub.add_signal(signal.SIGUSR1)
    os.kill(os.getpid(), signal.SIGUSR1)
    assert hub.wait(2.0) == "signal"

    buttons = []

    class Button:
        def __init__(self, pin: int, pull_up: bool, bounce_time: float) -> None:
            self.pin, self.pull_up, self.closed, self.when_pressed = pin, pull_up, False, None
            buttons.append(self)

        def close(self) -> None:
            self.closed = True

    fake_modules("gpiozero", types.SimpleNamespace(Button=Button))
    hub.add_gpio(17)
    assert buttons[0].pin == 17 and buttons[0].pull_up
    buttons[0].when_pressed()  # what gpiozero calls on a press
    assert hub.wait(2.0) == "gpio"
    hub.close()
    assert buttons[0].closed
    assert signal.getsignal(signal.SIGUSR1) == before  # closing restores the previous handler


def test_gpio_trigger_without_gpiozero_says_how_to_install_it(fake_modules: Callable[[str, Any], None]) -> None:
    fake_modules("gpiozero", None)
    with pytest.raises(CaptureError, match="python3-gpiozero"):
        TriggerHub().add_gpio(17)
