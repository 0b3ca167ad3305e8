"""The daemon's sections: ``[run]`` (workers, queues, state, shutdown), ``[dedup]``, ``[retention]`` and
``[status]``. Assembled into :class:`edgeface.config.Config` by the config package."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..config.fields import setting


@dataclass(frozen=True)
class RunConfig:
    """The daemon ``edgeface run``: workers, queues, state and shutdown."""

    state_dir: Path = setting(
        Path("/var/lib/edgeface/run"),
        "The daemon's own state: the folder source's progress, the saved-media index, status.json.",
    )
    workers: int = setting(
        1,
        "Inference workers (detect, quality, align, embed), each with its own interpreters using "
        "runtime.num_threads threads.",
        min=1,
        max=16,
    )
    frame_queue: int = setting(
        4,
        "Frames waiting for a worker, at most. When full, a live camera's oldest frame is dropped (counted); "
        "files and video files wait.",
        min=1,
        max=1000,
    )
    face_queue: int = setting(
        64, "Faces waiting for matching and the outbox, at most (workers wait when full).", min=1, max=10000
    )
    max_attempts: int = setting(
        3,
        "A frame whose processing crashed a stage is retried this many times, then recorded as failed.",
        min=1,
        max=100,
    )
    drain_timeout_s: float = setting(
        30.0,
        "On SIGTERM: longest wait for queued frames to become stored results and for the publisher to send "
        "what it can. What is stored stays in the outbox either way.",
        min=0,
        max=3600,
    )
    stall_s: float = setting(
        60.0,
        "A stage busy on one item for longer than this counts as hung: the systemd watchdog pings stop, and "
        "systemd restarts the service.",
        min=1,
        max=86400,
    )


@dataclass(frozen=True)
class DedupConfig:
    """Track and dedup: the same person in consecutive frames gives one result per window, the best capture."""

    window_s: float = setting(
        10.0,
        "Window of a track, in seconds of capture time: one result per person and source per window, carrying "
        "the best-quality capture. 0: one result per face. A continuous camera's frames; separate photos and "
        "triggers are kept apart unless merge_photos is set.",
        min=0,
        max=3600,
    )
    merge_photos: bool = setting(
        False,
        "Track the folder source's photos and trigger captures by window_s like a camera stream (separate "
        "photos of one person become one result). Off: one result per face of each photo, and per face of "
        "each trigger's frames (capture.frames_per_trigger).",
    )
    similarity: float | None = setting(
        None,
        "Cosine similarity at which a face joins a track.",
        min=-1.0,
        max=1.0,
        unset="the gallery's (or embedder's) threshold",
    )
    iou: float = setting(
        0.3,
        "A refused face (not embedded) joins a track when its box overlaps the track's last box this much "
        "(intersection over union).",
        min=0.0,
        max=1.0,
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
        0.0,
        "Seconds a saved image (or an imported photo, see capture.folder.delete_processed) is kept after its "
        "results were acknowledged.",
        min=0,
    )
    max_bytes: int = setting(
        1024**3,
        "Most bytes of saved images; at the limit new images are not saved (logged) until some are "
        "deleted. The results themselves are never held back.",
        min=0,
    )
    sweep_s: float = setting(30.0, "Seconds between retention sweeps.", min=0.05, max=86400)


@dataclass(frozen=True)
class StatusConfig:
    """The operator's view: status.json for ``edgeface status``, and Prometheus metrics on loopback."""

    interval_s: float = setting(5.0, "Seconds between updates of status.json (in run.state_dir).", min=0.05, max=3600)
    metrics_port: int = setting(
        9477,
        "TCP port of the Prometheus text endpoint (GET /metrics, GET /status); 0 turns it off.",
        min=0,
        max=65535,
    )
    metrics_host: str = setting(
        "127.0.0.1", "Address of the metrics endpoint; loopback only (scrape through a local agent or a tunnel)."
    )


@dataclass(frozen=True)
class CommandsConfig:
    """Signed commands from the centre (wipe, lock, unlock, revoke) and the dead-man switch."""

    trusted_keys: tuple[Path, ...] = setting(
        [],
        "Ed25519 public keys (PEM) of the central server that may sign commands; a command signed by none of "
        "them is refused (and the refusal reported). Empty: gallery.trusted_keys (the server signs both with "
        "server.signing_key).",
    )
    dead_man_s: float = setting(
        0.0,
        "Lock the unit (stop capturing; the outbox still drains) when it has not reached the centre's broker "
        "for this many seconds; only a signed 'unlock' lifts it. 0: off.",
        min=0,
    )
    signed_only: bool = setting(
        False,
        "Also refuse unsigned 'capture' and 'sync_gallery' commands (the server signs them too). Off: those two "
        "are accepted unsigned, as before signed commands (only the server's broker account can send them).",
    )
    wipe_reply_timeout_s: float = setting(
        10.0,
        "After a 'wipe': longest wait to send its report to the centre on a connection of its own.",
        min=0,
        max=600,
    )
