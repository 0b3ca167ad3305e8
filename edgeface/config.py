"""The one typed configuration of edgeface.

Sources, later ones winning: built-in defaults < TOML file (``--config`` or ``$EDGEFACE_CONFIG``) <
environment (``EDGEFACE_<SECTION>__<KEY>``, e.g. ``EDGEFACE_DETECT__MIN_SCORE=0.6``) < command-line
(``--set section.key=value`` and command flags). Everything is validated at start-up; a wrong value is
reported with its key, where it came from, and what is allowed.

Each section is a frozen dataclass; every field carries its documentation, so
``edgeface config defaults`` prints a complete, commented TOML file.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

ENV_PREFIX = "EDGEFACE_"
ENV_CONFIG = "EDGEFACE_CONFIG"


def setting(default: Any, doc: str, *, min: float | None = None, max: float | None = None) -> Any:
    """A config field: its default, a one-line description, and an optional numeric range."""
    meta = {"doc": doc, "min": min, "max": max}
    if isinstance(default, (dict, list)):
        frozen = dict(default) if isinstance(default, dict) else tuple(default)
        return field(default_factory=lambda: type(frozen)(frozen), metadata=meta)
    return field(default=default, metadata=meta)


# --------------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoggingConfig:
    """How edgeface writes its log (always one event per line, to stderr)."""

    level: Literal["debug", "info", "warning", "error"] = setting("info", "Lowest level written.")
    format: Literal["text", "json"] = setting(
        "text", "'text' (key=value, for people) or 'json' (one JSON object per line, for collectors)."
    )


@dataclass(frozen=True)
class ImageConfig:
    """Limits on image input; anything larger is refused before it is decoded."""

    max_pixels: int = setting(
        50_000_000,
        "Refuse images with more pixels than this, read from the header before decoding "
        "(decompression-bomb guard). 50 MP covers every phone and camera sensor in use.",
        min=1,
    )
    max_bytes: int = setting(64 * 1024 * 1024, "Refuse image files larger than this many bytes.", min=1)


@dataclass(frozen=True)
class RuntimeConfig:
    """The TFLite runtime: threads, XNNPACK and the accelerator backend."""

    backend: Literal["cpu", "edgetpu", "gpu", "external"] = setting(
        "cpu",
        "Inference backend: 'cpu' (XNNPACK), 'edgetpu' (Coral, libedgetpu.so.1), 'gpu' (TFLite GPU "
        "delegate), 'external' (any delegate library given in delegate_path).",
    )
    num_threads: int = setting(2, "CPU threads per interpreter.", min=1, max=64)
    xnnpack: bool = setting(True, "Use the XNNPACK CPU kernels (faster on ARM and x86; turn off to debug).")
    delegate_path: str = setting(
        "",
        "Delegate shared library. Required for 'external'; overrides the default library name for "
        "'edgetpu' (libedgetpu.so.1) and 'gpu' (libtensorflowlite_gpu_delegate.so).",
    )
    delegate_options: dict[str, str] = setting({}, "Options passed to the delegate, as a TOML table.")


@dataclass(frozen=True)
class ModelsConfig:
    """Which models to use; each is found by its card (``<id>.toml``) in ``dir``."""

    dir: Path | None = setting(None, "Folder of model cards and files; empty means the bundled models.")
    detector: str = setting("blazeface-short-range", "Model id of the face detector.")
    embedder: str = setting("dlib-resnet-v1-int8", "Model id of the face embedder.")
    verify_sha256: bool = setting(True, "Check each model file against the SHA-256 in its card at load.")


@dataclass(frozen=True)
class DetectConfig:
    """Face detection. Empty thresholds mean the detector card's calibrated values."""

    min_score: float | None = setting(None, "Detection score threshold (0-1).", min=0.0, max=1.0)
    nms_iou: float | None = setting(None, "Overlap above which detections are merged (0-1).", min=0.0, max=1.0)
    confident_score: float | None = setting(
        None,
        "In 'fallback' rotation mode, an upright face scoring this high ends the search; below it the "
        "other rotations are tried too and the best orientation of each face kept.",
        min=0.0,
        max=1.0,
    )
    max_faces: int = setting(32, "Keep at most this many faces per image (highest scores first).", min=1)
    rotations: tuple[int, ...] = setting(
        [0, 90, 270, 180],
        "In-plane rotations (degrees clockwise, multiples of 90) tried in this order, for photos of "
        "people lying down or taken with the camera sideways.",
    )
    rotation_mode: Literal["fallback", "all"] = setting(
        "fallback",
        "'fallback': try the next rotation only while no face is found (fast); 'all': run every "
        "rotation and merge (finds people in several orientations in one photo, 4x the cost).",
    )


@dataclass(frozen=True)
class QualityConfig:
    """The quality gate: a face failing any limit is refused, with the reason recorded."""

    min_score: float = setting(0.6, "Lowest detection score accepted.", min=0.0, max=1.0)
    min_face_px: float = setting(
        40.0, "Smallest face accepted, as the distance between the eye centres times 2.5 (px).", min=0.0
    )
    min_sharpness: float = setting(
        15.0, "Lowest variance of the Laplacian on the face, rescaled to 112 px wide (blur check).", min=0.0
    )
    max_yaw: float = setting(60.0, "Largest head turn left/right, estimated from keypoints (deg).", min=0, max=90)
    max_pitch: float = setting(45.0, "Largest head tilt up/down, estimated from keypoints (deg).", min=0, max=90)


@dataclass(frozen=True)
class AlignConfig:
    """Alignment of faces onto the embedder's chip template."""

    refine: bool = setting(
        True,
        "Refine the detector's keypoints with the face-mesh landmark model when the embedder's card has a "
        "landmark template (closer to the alignment the embedder was trained with; one more small model).",
    )


@dataclass(frozen=True)
class EmbedConfig:
    """Face embedding."""

    flip_fusion: bool | None = setting(
        None,
        "Add the embedding of the mirrored chip to each face's (about +0.2 points of LFW accuracy for twice "
        "the embedding time). Empty means the embedder card's choice. Gallery and probes must agree.",
    )
    batch_size: int = setting(8, "Chips per interpreter call when several faces are embedded at once.", min=1, max=64)


@dataclass(frozen=True)
class GalleryConfig:
    """The on-device gallery: where it lives, who may sign it, how it is searched, synced and encrypted."""

    dir: Path = setting(
        Path("/var/lib/edgeface/gallery"),
        "Device gallery store: versions/, staging/ and the 'current' symlink (see docs/gallery.md).",
    )
    trusted_keys: tuple[Path, ...] = setting(
        [], "Ed25519 public keys (PEM) of the central server; a bundle signed by none of them is refused."
    )
    top_k: int = setting(5, "Candidates (distinct identities) returned per face, best first.", min=1, max=100)
    target_fpir: float = setting(
        0.01,
        "When a bundle is built: the chance that a face of someone NOT enrolled is reported as a match, "
        "from which the bundle's decision threshold is derived for its size (edgeface/vision/calibration.py). "
        "Candidates are sent with their scores either way; this only sets the 'match' flag.",
        min=1e-6,
        max=0.5,
    )
    threshold: float | None = setting(
        None,
        "Cosine similarity below which the best candidate is 'no match'; empty means the threshold the "
        "bundle carries (derived at build time from gallery.target_fpir and the embedder card).",
        min=-1.0,
        max=1.0,
    )
    exact_max: int | None = setting(
        None,
        "Scan every vector (exact, no index) for galleries up to this size; empty means the built-in "
        "size where an exact scan is faster than the index.",
        min=0,
    )
    search_k: int | None = setting(
        None, "Annoy nodes inspected per query; empty chooses from the gallery size to hold recall.", min=1
    )
    encrypt: bool = setting(
        True, "Keep the installed gallery encrypted at rest (AES-GCM) with the device key; see key_*."
    )
    key_file: Path | None = setting(
        None, "Device key file (32 random bytes, mode 0600), used when no systemd credential or env key is set."
    )
    key_env: str = setting(
        "EDGEFACE_GALLERY_KEY", "Environment variable holding the device key (64 hex digits), if set."
    )
    key_credential: str = setting(
        "edgeface-gallery-key",
        "systemd credential name read from $CREDENTIALS_DIRECTORY (TPM-sealed with systemd-creds), if present.",
    )
    sync_url: str = setting("", "Base URL of the published gallery (where latest.json is); empty disables sync.")
    sync_interval_s: int = setting(3600, "Seconds between scheduled sync checks (a retained MQTT "
                                   "announcement triggers one at once).", min=10)
    sync_timeout_s: float = setting(30.0, "Network timeout per HTTP request (seconds).", min=1.0, max=600.0)
    sync_ca_file: Path | None = setting(None, "CA bundle (PEM) to trust for an https:// sync_url; empty: system CAs.")
    sync_max_bytes: int = setting(
        8 * 1024**3, "Refuse a bundle whose files add up to more than this many bytes.", min=1024
    )
    sync_username: str = setting(
        "", "User name for the central server's bundle endpoint (HTTP Basic); empty means device.id."
    )
    sync_password_file: Path | None = setting(
        None,
        "File holding this unit's bundle-download token (first line, mode 0600; `edgeface server add-device` "
        "prints it). Empty: no credentials are sent (a plain `edgeface gallery serve` needs none).",
    )
    allow_insecure_http: bool = setting(
        False,
        "Send the bundle-download token (sync_password_file) over a plain http:// sync_url. Off: such a sync "
        "is refused, since anyone on the network path could read the token; use https://. Only for a closed "
        "lab network. Credentials never follow a redirect to another origin, whatever this says.",
    )
    pointer_ttl_s: int = setting(
        3 * 86400,
        "When publishing (gallery build/refresh, the central server): seconds the signed latest.json stays "
        "valid. Units refuse an older pointer and show their gallery as stale, so a mirror cannot keep them on "
        "an old gallery; re-sign it in time (`edgeface gallery refresh` from cron, daily; the central server "
        "re-signs when a unit fetches it past half its lifetime). Longer = more offline slack for mirrors.",
        min=600,
        max=90 * 86400,
    )


@dataclass(frozen=True)
class EnrollConfig:
    """Enrollment on the central side: quality, duplicates and the incremental cache."""

    workspace: Path = setting(
        Path("~/.local/share/edgeface/enrollment"),
        "Enrollment workspace: a SQLite file of enrolled images, provenance and cached embeddings ('~' is "
        "your home; one place, whichever folder you run edgeface from).",
    )
    duplicate_similarity: float = setting(
        0.985,
        "Flag two enrolled images as near-duplicates at or above this cosine similarity. Depends on the "
        "embedder: set it between two different photos of one person (dlib: up to ~0.96) and a re-encoded "
        "copy of one photo (dlib: ~0.995).",
        min=0.0,
        max=1.0,
    )
    second_face_ratio: float = setting(
        0.7,
        "Refuse an image whose second-largest face is at least this fraction of the largest (ambiguous: "
        "enrollment photos must show one person).",
        min=0.0,
        max=1.0,
    )


@dataclass(frozen=True)
class DeviceConfig:
    """This field unit's identity on the network."""

    id: str = setting(
        "",
        "Device id: 1-64 letters, digits, '.', '_' or '-'. It is the <id> level of the unit's MQTT topics "
        "and must equal the CN of its client certificate (or its broker username); empty means the host name.",
    )


@dataclass(frozen=True)
class OutboxConfig:
    """The disk outbox: results wait here, durable, until the broker acknowledged them (see docs/outbox-mqtt.md)."""

    path: Path = setting(Path("/var/lib/edgeface/outbox.sqlite3"), "SQLite file of pending results.")
    max_results: int = setting(100_000, "Most results held; at the limit on_full applies.", min=1)
    max_bytes: int = setting(256 * 1024**2, "Most payload bytes held; at the limit on_full applies.", min=4096)
    on_full: Literal["drop_oldest_no_match", "refuse"] = setting(
        "drop_oldest_no_match",
        "At a limit: 'drop_oldest_no_match' deletes the oldest refused, then no-match results (logged, "
        "counted; a candidate match is never dropped) and refuses new work when only matches are left; "
        "'refuse' refuses every new result until results drain. Refused work raises OutboxFull.",
    )
    ttl_s: float = setting(
        0.0,
        "Delete unsent no-match and refused results older than this (seconds, logged); 0 keeps them. Ages use "
        "the wall clock: on a unit without a real-time clock, the first NTP sync can age everything at once.",
        min=0,
    )
    match_ttl_s: float = setting(
        0.0, "Delete unsent candidate matches older than this (seconds, logged); 0 keeps them until sent.", min=0
    )
    max_quarantined: int = setting(
        1000, "Damaged rows kept in quarantine for inspection; the oldest go beyond this.", min=0
    )
    synchronous: Literal["full", "normal"] = setting(
        "full",
        "'full' fsyncs every stored result (survives power loss); 'normal' is faster but a power cut may "
        "roll back the last results stored (never corrupts). Keep 'full' unless storage is too slow.",
    )
    cache_kib: int = setting(
        1024,
        "SQLite page cache per outbox connection, in KiB (the daemon uses up to four: pipeline, publisher, status, "
        "retention). It fills as the outbox file grows, then stays: the unit's memory grows by at most this much "
        "per connection after start-up.",
        min=64, max=1048576,
    )


@dataclass(frozen=True)
class MqttConfig:
    """The MQTT link: broker, TLS, credentials, and how results are sent (see deploy/mosquitto/)."""

    host: str = setting("", "Broker host name; empty means no broker: results wait in the outbox.")
    port: int = setting(0, "Broker port; 0 means 8883 with TLS, 1883 without.", min=0, max=65535)
    protocol: Literal["mqtt5", "mqtt311"] = setting(
        "mqtt5", "'mqtt5', or 'mqtt311' for old brokers (which cannot report refused publishes, see docs)."
    )
    tls: bool = setting(True, "Use TLS and verify the broker's certificate (turn off only on loopback tests).")
    ca_file: Path | None = setting(None, "CA certificate (PEM) that signed the broker's certificate; empty: system CAs.")
    cert_file: Path | None = setting(None, "Client certificate (PEM) for mutual TLS; its CN must equal device.id.")
    key_file: Path | None = setting(None, "Private key (PEM) of cert_file.")
    username: str = setting("", "Broker username when not using client certificates (must equal device.id).")
    password_file: Path | None = setting(None, "File holding the broker password (first line; keep it mode 0600).")
    client_id: str = setting("", "MQTT client id; empty means device.id (one persistent session per unit).")
    keepalive_s: int = setting(30, "Keep-alive interval; a dead link is noticed after 1.5 times this.", min=5, max=3600)
    connect_timeout_s: float = setting(10.0, "Give up a connection attempt after this many seconds.", min=1, max=300)
    session_expiry_s: int = setting(
        7 * 86400, "MQTT 5 session expiry: the broker keeps the unit's session this long while it is offline.",
        min=0, max=4294967295,
    )
    inflight: int = setting(100, "Results sent and not yet acknowledged, at most (the in-flight window).",
                            min=1, max=65535)
    reconnect_min_s: float = setting(1.0, "First reconnect delay; doubles per failure, with jitter.", min=0.01)
    reconnect_max_s: float = setting(120.0, "Longest reconnect delay.", min=0.01)
    ack_timeout_s: float = setting(
        60.0, "Reconnect (and resend) when a sent result has waited this long for its acknowledgement.", min=1
    )
    heartbeat_s: float = setting(60.0, "Seconds between retained 'online' status heartbeats.", min=1)
    require_subscriber: bool = setting(
        True,
        "Keep a result queued (and retry) when the broker acknowledges it with MQTT 5 reason 'no matching "
        "subscribers': the broker would drop it because no ingest subscription exists.",
    )
    include_crop: bool = setting(False, "Send a small JPEG face crop with each result (off: no images leave).")
    max_crop_bytes: int = setting(16384, "Largest face crop JPEG, bytes.", min=1024, max=65536)
    max_payload_bytes: int = setting(
        131072, "Largest result payload sent or accepted by ingest, bytes.", min=1024, max=268435455
    )


@dataclass(frozen=True)
class IngestConfig:
    """The central ingest: receives results from the broker and stores each result id once."""

    db: Path = setting(Path("/var/lib/edgeface/results.sqlite3"), "SQLite file the results are stored in.")
    group: str = setting("edgeface-ingest", "MQTT 5 shared-subscription group; workers in one group share the load.")
    client_id: str = setting("", "MQTT client id of this worker; empty means ingest-<host name>. Unique per worker.")
    batch: int = setting(200, "Commit and acknowledge at most this many results at once.", min=1, max=10000)
    flush_ms: float = setting(50.0, "Commit and acknowledge at least this often (milliseconds).", min=1, max=10000)


@dataclass(frozen=True)
class ServerConfig:
    """The central server (``edgeface server``): web application, database, gallery publishing, accounts."""

    database_url: str = setting(
        "sqlite:////var/lib/edgeface/server.sqlite3",
        "SQLAlchemy database URL: sqlite:////absolute/path.sqlite3 (one host) or "
        "postgresql+psycopg://user@host/edgeface (several server hosts; see deploy/postgresql.md).",
    )
    data_dir: Path = setting(
        Path("/var/lib/edgeface/server"),
        "Server files: uploaded enrollment images, the enrollment workspace, the publish folder.",
    )
    signing_key: Path = setting(
        Path("/etc/edgeface/gallery-signing.pem"),
        "Ed25519 key that signs gallery bundles (mode 0600; `edgeface gallery keygen`).",
    )
    public_url: str = setting(
        "",
        "Base URL devices reach this server at (e.g. https://edgeface.example.org); the gallery "
        "announcement points them to <public_url>/bundles/. Required to publish a gallery (the request's "
        "Host header is never used).",
    )
    host: str = setting("127.0.0.1", "Address the web application listens on (put a TLS proxy in front).")
    port: int = setting(8480, "TCP port of the web application.", min=0, max=65535)
    threads: int = setting(8, "Web request threads per server process.", min=1, max=256)
    ingest_workers: int = setting(
        1, "Ingest workers started by `edgeface server run` (processes on the MQTT 5 shared subscription).",
        min=0, max=64,
    )
    two_person_rule: bool = setting(
        False, "A confirmation counts only once a second, different reviewer confirmed the same identity."
    )
    cookie_secure: bool = setting(
        True, "Send session cookies only over HTTPS (turn off only for loopback tests without TLS)."
    )
    session_idle_s: int = setting(1800, "Log a user out after this many seconds without a request.", min=60)
    session_max_s: int = setting(43200, "Log a user out this many seconds after login, active or not.", min=300)
    login_max_failures: int = setting(
        5, "Failed logins per user name within login_window_s before further attempts are refused.", min=1
    )
    login_max_failures_ip: int = setting(
        20, "Failed logins per client address within login_window_s before it is refused.", min=1
    )
    login_window_s: int = setting(900, "Window of the login rate limits (seconds).", min=10)
    trusted_proxies: int = setting(
        0, "Reverse proxies in front of the server whose X-Forwarded-For/-Proto are believed (0: none).",
        min=0, max=5,
    )
    max_upload_bytes: int = setting(20 * 1024**2, "Largest upload (enrollment images) per request, bytes.",
                                    min=1024)
    rejected_keep: int = setting(1000, "Malformed MQTT messages kept (first bytes) for inspection.", min=0)


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
        None, "Cosine similarity at which a face joins a track; empty: the gallery's (or embedder's) threshold.",
        min=-1.0, max=1.0,
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


@dataclass(frozen=True)
class Config:
    """All of edgeface's settings."""

    logging: LoggingConfig = field(default_factory=LoggingConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    align: AlignConfig = field(default_factory=AlignConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    gallery: GalleryConfig = field(default_factory=GalleryConfig)
    enroll: EnrollConfig = field(default_factory=EnrollConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    capture_folder: CaptureFolderConfig = field(default_factory=CaptureFolderConfig)
    capture_opencv: CaptureOpenCVConfig = field(default_factory=CaptureOpenCVConfig)
    capture_picamera2: CapturePicamera2Config = field(default_factory=CapturePicamera2Config)
    run: RunConfig = field(default_factory=RunConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    status: StatusConfig = field(default_factory=StatusConfig)


# --------------------------------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------------------------------


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_text(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_type_text(a) for a in args) + " (or empty)"
    if origin is tuple:
        return f"a list of {_type_text(typing.get_args(tp)[0])}"
    if origin is dict:
        return "a table of strings"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string", Path: "a path"}.get(
        tp, str(tp)
    )


def _from_text(text: str, tp: Any) -> Any:
    """Parse an environment or command-line string as TOML where the type is structured."""
    origin = typing.get_origin(tp)
    if tp in (str, Path) or origin is Literal:
        return text
    if origin in (typing.Union, types.UnionType):
        if text == "":
            return None
        inner = [a for a in typing.get_args(tp) if a is not type(None)][0]
        return _from_text(text, inner)
    if tp is bool:
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        return text
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _coerce(value: Any, tp: Any, key: str, source: str, base_dir: Path | None, meta: Mapping[str, Any]) -> Any:
    def fail(extra: str = "") -> ConfigError:
        return ConfigError(
            f"{key} = {value!r} (from {source}) is not valid: expected {_type_text(tp)}{extra}."
        )

    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or value == "":
            return None
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _coerce(value, inner[0], key, source, base_dir, meta)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise fail()
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise fail()
        item = typing.get_args(tp)[0]
        return tuple(_coerce(v, item, key, source, base_dir, {}) for v in value)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise fail()
        return {str(k): str(v) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise fail()
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail()
        out: Any = value
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail()
        out = float(value)
    elif tp is str:
        if not isinstance(value, str):
            raise fail()
        return value
    elif tp is Path:
        if not isinstance(value, (str, Path)):
            raise fail()
        p = Path(value).expanduser()
        if base_dir is not None and not p.is_absolute():
            p = base_dir / p
        return p
    else:  # pragma: no cover - a section declared a type this loader does not know
        raise TypeError(f"unsupported config type {tp!r} for {key}")
    lo, hi = meta.get("min"), meta.get("max")
    if (lo is not None and out < lo) or (hi is not None and out > hi):
        rng = f" in [{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
        raise fail(rng)
    return out


def _section_fields(root: type = Config) -> dict[str, tuple[type, dict[str, dataclasses.Field[Any]]]]:
    out = {}
    for name, tp in _hints(root).items():
        out[name] = (tp, {f.name: f for f in dataclasses.fields(tp)})
    return out


def _apply(
    values: dict[str, dict[str, Any]],
    raw: Mapping[str, Any],
    source: str,
    base_dir: Path | None,
    *,
    from_text: bool = False,
) -> None:
    sections = _section_fields()
    for sec_name, sec_value in raw.items():
        if sec_name not in sections:
            raise ConfigError(
                f"unknown config section [{sec_name}] (from {source}); known sections: "
                + ", ".join(sorted(sections))
            )
        if not isinstance(sec_value, Mapping):
            raise ConfigError(f"[{sec_name}] (from {source}) must be a table of settings")
        sec_type, fields_ = sections[sec_name]
        hints = _hints(sec_type)
        for key, value in sec_value.items():
            full = f"{sec_name}.{key}"
            if key not in fields_:
                raise ConfigError(
                    f"unknown setting {full} (from {source}); settings in [{sec_name}]: "
                    + ", ".join(sorted(fields_))
                )
            tp = hints[key]
            if from_text and isinstance(value, str):
                value = _from_text(value, tp)
            values.setdefault(sec_name, {})[key] = _coerce(
                value, tp, full, source, base_dir, fields_[key].metadata
            )


def _env_overrides(env: Mapping[str, str]) -> dict[str, dict[str, str]]:
    raw: dict[str, dict[str, str]] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_CONFIG or "__" not in name:
            continue
        sec, _, key = name[len(ENV_PREFIX) :].partition("__")
        raw.setdefault(sec.lower(), {})[key.lower()] = value
    return raw


def _cli_overrides(pairs: Sequence[str]) -> dict[str, dict[str, str]]:
    raw: dict[str, dict[str, str]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        sec, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise ConfigError(f"--set {pair!r}: expected section.key=value, e.g. --set detect.min_score=0.6")
        raw.setdefault(sec, {})[name] = value
    return raw


def load_config(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Sequence[str] = (),
) -> Config:
    """Build the configuration from defaults, an optional TOML file, the environment and overrides.

    ``overrides`` are ``section.key=value`` strings (what ``--set`` collects). Raises
    :class:`ConfigError` naming the offending key on any unknown or invalid value.
    """
    env = os.environ if env is None else env
    if path is None and env.get(ENV_CONFIG):
        path = env[ENV_CONFIG]
    values: dict[str, dict[str, Any]] = {}
    if path is not None:
        p = Path(path).expanduser()
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {p} does not exist; create it with `edgeface config defaults > {p}`")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"config file {p} cannot be read: {e}") from e
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {p} is not valid TOML: {e}") from e
        _apply(values, data, str(p), p.resolve().parent)
    _apply(values, _env_overrides(env), "environment", None, from_text=True)
    _apply(values, _cli_overrides(overrides), "command line", None, from_text=True)
    sections = {}
    for name, (sec_type, _) in _section_fields().items():
        sections[name] = sec_type(**values.get(name, {}))
    return Config(**sections)


def _toml_value(value: Any) -> str:
    if value is None:
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(config: Config, *, docs: bool = True) -> str:
    """The configuration as a TOML document, each setting preceded by its documentation."""
    lines: list[str] = []
    for name, (sec_type, fields_) in _section_fields().items():
        section = getattr(config, name)
        if docs and sec_type.__doc__:
            lines.append(f"# {sec_type.__doc__.strip()}")
        lines.append(f"[{name}]")
        hints = _hints(sec_type)
        for fname, f in fields_.items():
            if docs:
                lines.append(f"# {f.metadata.get('doc', '')} ({_type_text(hints[fname])})")
            lines.append(f"{fname} = {_toml_value(getattr(section, fname))}")
        lines.append("")
    return "\n".join(lines)


def as_dict(config: Config) -> dict[str, dict[str, Any]]:
    """Plain nested dict (paths as strings) for ``--json`` output and logs."""
    out: dict[str, dict[str, Any]] = {}
    for name in _section_fields():
        sec = dataclasses.asdict(getattr(config, name))
        out[name] = {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v) for k, v in sec.items()}
    return out
