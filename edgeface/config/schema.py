"""The whole configuration, assembled in one place from the sections their packages declare.

Each package owns its settings (``edgeface/<package>/settings.py``); this module only lists them, in
the order ``edgeface config defaults`` prints them, and records the names old files may still use.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..capture.settings import CaptureConfig
from ..daemon.settings import CommandsConfig, DedupConfig, RetentionConfig, RunConfig, StatusConfig
from ..doctor.settings import DoctorConfig
from ..gallery.settings import EnrollConfig, GalleryConfig
from ..mqtt.settings import IngestConfig, MqttConfig
from ..outbox.settings import OutboxConfig
from ..protect.settings import ProtectConfig
from ..server.settings import ServerConfig
from ..vision.settings import (
    AlignConfig,
    DetectConfig,
    EmbedConfig,
    ImageConfig,
    ModelsConfig,
    QualityConfig,
    RuntimeConfig,
)
from .core import DeviceConfig, LoggingConfig
from .fields import section


@dataclass(frozen=True)
class Config:
    """All of edgeface's settings."""

    logging: LoggingConfig = section(LoggingConfig)  # edgeface.config.core
    image: ImageConfig = section(ImageConfig)  # edgeface.vision.settings
    runtime: RuntimeConfig = section(RuntimeConfig)
    models: ModelsConfig = section(ModelsConfig)
    detect: DetectConfig = section(DetectConfig)
    quality: QualityConfig = section(QualityConfig)
    align: AlignConfig = section(AlignConfig)
    embed: EmbedConfig = section(EmbedConfig)
    gallery: GalleryConfig = section(GalleryConfig)  # edgeface.gallery.settings
    enroll: EnrollConfig = section(EnrollConfig)
    device: DeviceConfig = section(DeviceConfig)  # edgeface.config.core
    outbox: OutboxConfig = section(OutboxConfig)  # edgeface.outbox.settings
    protect: ProtectConfig = section(ProtectConfig)  # edgeface.protect.settings
    mqtt: MqttConfig = section(MqttConfig)  # edgeface.mqtt.settings
    ingest: IngestConfig = section(IngestConfig)
    server: ServerConfig = section(ServerConfig)  # edgeface.server.settings
    capture: CaptureConfig = section(CaptureConfig)  # edgeface.capture.settings, with .folder, .opencv, .picamera2
    run: RunConfig = section(RunConfig)  # edgeface.daemon.settings
    dedup: DedupConfig = section(DedupConfig)
    retention: RetentionConfig = section(RetentionConfig)
    status: StatusConfig = section(StatusConfig)
    commands: CommandsConfig = section(CommandsConfig)
    doctor: DoctorConfig = section(DoctorConfig)  # edgeface.doctor.settings


RENAMED_SECTIONS: dict[str, str] = {
    "capture_folder": "capture.folder",
    "capture_opencv": "capture.opencv",
    "capture_picamera2": "capture.picamera2",
}
"""Old section name -> its place now (``capture_folder`` -> ``capture.folder``); old files, environment
variables and ``--set`` still work, with a warning that says what to rename."""
