"""The capture sections: ``[capture]`` (which source, when to take frames) and one nested table per kind
of source, ``[capture.folder]``, ``[capture.opencv]``, ``[capture.picamera2]`` (``config.capture.folder``).
Assembled into :class:`edgeface.config.Config` by the config package; the flat names of older files
(``[capture_folder]``, ...) are read there too (see ``edgeface.config.schema.RENAMED_SECTIONS``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..config.fields import section, setting


@dataclass(frozen=True)
class CaptureFolderConfig:
    """The folder source: new photos in a folder, each processed once, in order, across restarts."""

    path: Path = setting(Path("/var/lib/edgeface/inbox"), "Folder watched for new photos.")
    recursive: bool = setting(True, "Also watch sub-folders (a camera card's DCIM/100CANON/...).")
    suffixes: tuple[str, ...] = setting(
        [".jpg", ".jpeg", ".png", ".webp", ".bmp", ".mpo"],
        "File name endings read as photos (case-insensitive); other files are ignored.",
    )
    settle_s: float = setting(
        2.0,
        "A file is read once its size and modification time have not changed for this long, so a copy in "
        "progress is never read half-way. Names starting with '.' or ending in .part, .tmp, .crdownload or ~ are "
        "never read: writers may use such a name and rename when done.",
        min=0,
    )
    poll_s: float = setting(1.0, "Seconds between scans of the folder.", min=0.01, max=3600)
    once: bool = setting(
        False, "Exit when every file in the folder has been processed (a batch import) instead of waiting for more."
    )
    max_attempts: int = setting(
        3,
        "A file whose processing was interrupted by a crash this many times is set aside as failed (logged).",
        min=1,
        max=100,
    )
    delete_processed: bool = setting(
        False,
        "Delete each photo once the broker acknowledged all its results, plus retention.keep_after_ack_s "
        "(a photo without a face: once processed). Off: the folder is left as it is.",
    )


@dataclass(frozen=True)
class CaptureOpenCVConfig:
    """The OpenCV source: USB cameras, RTSP/HTTP streams, GStreamer pipelines and video files."""

    device: str = setting(
        "0",
        "A camera index (0) or /dev/videoN; an rtsp:// or http(s):// URL; a GStreamer pipeline ending in appsink "
        "(Jetson CSI: 'nvarguscamerasrc ! ... ! appsink'); or a video file.",
    )
    width: int = setting(0, "Requested frame width (0: the camera's default).", min=0, max=16384)
    height: int = setting(0, "Requested frame height (0: the camera's default).", min=0, max=16384)
    camera_fps: float = setting(0.0, "Requested camera frame rate (0: the camera's default).", min=0, max=1000)
    fourcc: str = setting(
        "", "Requested pixel format of a USB camera, e.g. 'MJPG' (often needed for full resolution); empty: default."
    )
    loop: bool = setting(False, "Video files: start again at the end (benchmarks) instead of ending the run.")
    read_timeout_s: float = setting(
        5.0,
        "A live camera or stream that delivers no frame for this long is treated as lost and reopened.",
        min=0.1,
        max=600,
    )


@dataclass(frozen=True)
class CapturePicamera2Config:
    """The Raspberry Pi camera source (picamera2 comes with Raspberry Pi OS: apt install python3-picamera2)."""

    camera: int = setting(0, "Camera number, in Picamera2.global_camera_info() order.", min=0, max=16)
    width: int = setting(1920, "Frame width.", min=64, max=16384)
    height: int = setting(1080, "Frame height.", min=64, max=16384)
    rotate_180: bool = setting(False, "The camera is mounted upside down.")
    autofocus: bool = setting(True, "Continuous autofocus on cameras that have it (Camera Module 3).")


@dataclass(frozen=True)
class CaptureTagsConfig:
    """Case and body tags read from the photo and its folder (docs/field-unit.md, "Case and place").
    A tag given with the capture (``edgeface trigger --tag``, the MQTT capture command) wins over a code
    in the photo, which wins over the folder."""

    codes: tuple[Literal["qrcode", "barcode"], ...] = setting(
        ["qrcode", "barcode"],
        "Codes read from each frame as its case/body tag (OpenCV's detectors; body bags and evidence cards "
        "carry them). [] reads none.",
    )
    pattern: str = setting(
        "",
        "A regular expression a code's whole text must match to count as a tag (e.g. '(BODY|CASE)-[0-9]+'), "
        "so a product barcode in the scene is not taken for a case; empty: any code.",
    )
    max_side: int = setting(
        0,
        "Read codes on the frame shrunk to this many pixels on its longer side (faster on large photos, "
        "small codes may be missed); 0: at full resolution.",
        min=0,
        max=16384,
    )
    streams: bool = setting(
        False,
        "Also read codes on a continuous camera's frames (each frame with a face: costly at a high frame rate). "
        "Off: codes are read on photos of the folder source and on triggered frames only.",
    )
    folder: bool = setting(
        True,
        "The folder source: a photo in <capture.folder.path>/<case>/... carries <case> as its tag (a camera "
        "card's DCIM folder is no case; photos directly in the folder have none).",
    )


@dataclass(frozen=True)
class CaptureLocationConfig:
    """Where each result was seen: the photo's EXIF GPS, the unit's GPS receiver (gpsd) or a fixed place."""

    sources: tuple[Literal["exif", "gpsd", "static"], ...] = setting(
        ["exif", "gpsd", "static"],
        "Where the place comes from, first that knows: 'exif' (the photo's own GPS tags), 'gpsd' (the unit's "
        "receiver, through gpsd), 'static' (lat/lon below). [] sends no place.",
    )
    lat: float | None = setting(None, "Latitude of the unit's fixed place (WGS 84).", min=-90, max=90, unset="none")
    lon: float | None = setting(None, "Longitude of the unit's fixed place.", min=-180, max=180, unset="none")
    accuracy_m: float | None = setting(
        None, "How far off the fixed place may be, metres.", min=0, max=1e8, unset="not stated"
    )
    gpsd_host: str = setting("127.0.0.1", "gpsd's address (a unit without gpsd simply has no gpsd fix).")
    gpsd_port: int = setting(2947, "gpsd's TCP port.", min=1, max=65535)
    gpsd_max_age_s: float = setting(
        10.0, "A gpsd fix older than this is not used (the receiver lost the sky).", min=0.1, max=86400
    )


@dataclass(frozen=True)
class CaptureConfig:
    """Where the field unit's frames come from and when it takes them (``edgeface run``; docs/field-unit.md)."""

    source: Literal["folder", "opencv", "picamera2"] = setting(
        "folder",
        "'folder': photos copied into capture.folder.path (camera card, phone); 'opencv': a USB camera, RTSP/HTTP "
        "stream, GStreamer pipeline or video file ([capture.opencv]); 'picamera2': a Raspberry Pi CSI camera "
        "([capture.picamera2]).",
    )
    name: str = setting("", "Source name carried in each result; empty: derived (cam0, picam0, the file's path).")
    mode: Literal["continuous", "trigger"] = setting(
        "continuous",
        "Cameras: 'continuous' takes frames at fps; 'trigger' takes frames_per_trigger frames each time a trigger "
        "fires. The folder source ignores it: every new file is a frame.",
    )
    fps: float = setting(
        2.0,
        "Continuous mode: frames per second taken from a camera (0: as fast as the pipeline keeps up).",
        min=0,
        max=240,
    )
    triggers: tuple[Literal["command", "signal", "key", "gpio"], ...] = setting(
        ["command", "signal"],
        "Trigger mode: what fires a capture: 'command' (the MQTT 'capture' command), 'signal' (SIGUSR1, e.g. "
        "`edgeface trigger`), 'key' (Enter on the terminal), 'gpio' (a push button on gpio_pin, via gpiozero).",
    )
    frames_per_trigger: int = setting(
        1, "Frames taken per trigger (a short burst lets the dedup stage pick the best capture).", min=1, max=100
    )
    gpio_pin: int = setting(
        17, "Trigger mode 'gpio': BCM number of the button's pin (button to ground, internal pull-up).", min=0, max=53
    )
    retry_min_s: float = setting(
        1.0, "A camera that fails or disappears is reopened after this delay, doubling per failure.", min=0.01
    )
    retry_max_s: float = setting(60.0, "Longest delay between attempts to reopen a camera.", min=0.01)
    folder: CaptureFolderConfig = section(CaptureFolderConfig)
    opencv: CaptureOpenCVConfig = section(CaptureOpenCVConfig)
    picamera2: CapturePicamera2Config = section(CapturePicamera2Config)
    tags: CaptureTagsConfig = section(CaptureTagsConfig)
    location: CaptureLocationConfig = section(CaptureLocationConfig)
