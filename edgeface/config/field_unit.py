"""INTERIM: the capture and daemon sections, until they move to edgeface/capture/settings.py and
edgeface/daemon/settings.py (those packages are being reorganised)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .fields import setting


@dataclass(frozen=True)
class CaptureConfig:
    """Where the field unit's frames come from and when it takes them (``edgeface run``; docs/field-unit.md)."""

    source: Literal["folder", "opencv", "picamera2"] = setting(
        "folder",
        "'folder': photos copied into capture_folder.path (camera card, phone); 'opencv': a USB camera, RTSP/HTTP "
        "stream, GStreamer pipeline or video file ([capture_opencv]); 'picamera2': a Raspberry Pi CSI camera "
        "([capture_picamera2]).",
    )
    name: str = setting("", "Source name carried in each result; empty: derived (cam0, picam0, the file's path).")
    mode: Literal["continuous", "trigger"] = setting(
        "continuous",
        "Cameras: 'continuous' takes frames at fps; 'trigger' takes frames_per_trigger frames each time a trigger "
        "fires. The folder source ignores it: every new file is a frame.",
    )
    fps: float = setting(
        2.0, "Continuous mode: frames per second taken from a camera (0: as fast as the pipeline keeps up).",
        min=0, max=240,
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
        3, "A file whose processing was interrupted by a crash this many times is set aside as failed (logged).",
        min=1, max=100,
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
        5.0, "A live camera or stream that delivers no frame for this long is treated as lost and reopened.",
        min=0.1, max=600,
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
class RunConfig:
    """The daemon ``edgeface run``: workers, queues, state and shutdown."""

    state_dir: Path = setting(
        Path("/var/lib/edgeface/run"),
        "The daemon's own state: the folder source's progress, the saved-media index, status.json.",
    )
    workers: int = setting(
        1, "Inference workers (detect, quality, align, embed), each with its own interpreters using "
        "runtime.num_threads threads.", min=1, max=16,
    )
    frame_queue: int = setting(
        4, "Frames waiting for a worker, at most. When full, a live camera's oldest frame is dropped (counted); "
        "files and video files wait.", min=1, max=1000,
    )
    face_queue: int = setting(64, "Faces waiting for matching and the outbox, at most (workers wait when full).",
                              min=1, max=10000)
    max_attempts: int = setting(
        3, "A frame whose processing crashed a stage is retried this many times, then recorded as failed.",
        min=1, max=100,
    )
    drain_timeout_s: float = setting(
        30.0,
        "On SIGTERM: longest wait for queued frames to become stored results and for the publisher to send "
        "what it can. What is stored stays in the outbox either way.",
        min=0, max=3600,
    )
    stall_s: float = setting(
        60.0,
        "A stage busy on one item for longer than this counts as hung: the systemd watchdog pings stop, and "
        "systemd restarts the service.",
        min=1, max=86400,
    )


@dataclass(frozen=True)
class DedupConfig:
    """Track and dedup: the same person in consecutive frames gives one result per window, the best capture."""

    window_s: float = setting(
        10.0,
        "Window of a track, in seconds of capture time: one result per person and source per window, carrying "
        "the best-quality capture. 0: one result per face.",
        min=0, max=3600,
    )
    similarity: float | None = setting(
        None, "Cosine similarity at which a face joins a track.",
        min=-1.0, max=1.0, unset="the gallery's (or embedder's) threshold",
    )
    iou: float = setting(
        0.3, "A refused face (not embedded) joins a track when its box overlaps the track's last box this much "
        "(intersection over union).", min=0.0, max=1.0,
    )


@dataclass(frozen=True)
class RetentionConfig:
    """What the unit keeps of what it saw, and for how long. By default nothing but the results themselves."""

    save: Literal["none", "crop", "frame"] = setting(
        "none",
        "Images kept on the unit with each result: 'none', the face 'crop', or the whole 'frame' (JPEG, in dir). "
        "Each is deleted keep_after_ack_s after the broker acknowledged its result.",
    )
    dir: Path = setting(Path("/var/lib/edgeface/media"), "Folder of saved crops and frames.")
    keep_after_ack_s: float = setting(
        0.0, "Seconds a saved image (or an imported photo, see capture_folder.delete_processed) is kept after its "
        "results were acknowledged.", min=0,
    )
    max_bytes: int = setting(
        1024**3, "Most bytes of saved images; at the limit new images are not saved (logged) until some are "
        "deleted. The results themselves are never held back.", min=0,
    )
    sweep_s: float = setting(30.0, "Seconds between retention sweeps.", min=0.05, max=86400)


@dataclass(frozen=True)
class StatusConfig:
    """The operator's view: status.json for ``edgeface status``, and Prometheus metrics on loopback."""

    interval_s: float = setting(5.0, "Seconds between updates of status.json (in run.state_dir).", min=0.05,
                                max=3600)
    metrics_port: int = setting(
        9477, "TCP port of the Prometheus text endpoint (GET /metrics, GET /status); 0 turns it off.",
        min=0, max=65535,
    )
    metrics_host: str = setting(
        "127.0.0.1", "Address of the metrics endpoint; loopback only (scrape through a local agent or a tunnel)."
    )
