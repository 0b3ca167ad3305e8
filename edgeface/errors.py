"""Exceptions raised by edgeface.

Library code raises these and never exits the process; the CLI turns them into a message and an exit
code. Every message says what went wrong and what the user can do about it.
"""

from __future__ import annotations


class EdgefaceError(Exception):
    """Base class for every error edgeface raises on purpose."""


class ConfigError(EdgefaceError):
    """A configuration value is missing, unknown or out of range (the message names the key)."""


class ImageError(EdgefaceError):
    """An image could not be read: empty, truncated, not an image, or an unsupported format."""


class ImageTooLarge(ImageError):
    """An image is larger than the configured pixel or byte limit (refused before decoding)."""


class ModelError(EdgefaceError):
    """A model file or its card is missing, corrupt, or does not match what the code needs."""


class UnknownModel(ModelError, ConfigError):
    """A configured model id has no card in the models folder: a configuration error (exit 2)."""


class BackendUnavailable(ModelError):
    """An inference backend (TFLite runtime or accelerator delegate) cannot be loaded here."""


class GalleryError(EdgefaceError):
    """A gallery bundle, index or store cannot be used (the message says which file and why)."""


class BundleRejected(GalleryError):
    """A bundle failed a trust check and was refused: unsigned, bad signature, tampered or missing file,
    older than the installed one (rollback), or built for another embedder. ``reason`` is a short code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class GalleryKeyError(GalleryError):
    """A signing or device encryption key is missing, unreadable, has unsafe permissions, or is wrong."""


class SyncError(GalleryError):
    """A gallery download failed (network, HTTP status, size limit); the installed gallery is untouched."""


class OutboxError(EdgefaceError):
    """The result outbox cannot store or hand out results (I/O error, newer format, wrong path)."""


class OutboxFull(OutboxError):
    """The outbox is at its count or byte limit and holds nothing the overflow policy may drop."""


class OutboxDiskFull(OutboxError):
    """The disk holding the outbox is full: the result was not stored."""


class OutboxCorrupt(OutboxError):
    """The outbox database file itself is damaged (single damaged rows are quarantined instead)."""


class PayloadError(EdgefaceError):
    """An MQTT payload does not follow its JSON Schema or the contract's rules.

    ``kind`` names the problem for counters: too_large, not_utf8, not_json, schema, rules,
    device_mismatch.
    """

    def __init__(self, message: str, kind: str = "schema") -> None:
        super().__init__(message)
        self.kind = kind


class MqttError(EdgefaceError):
    """The MQTT link is misconfigured (TLS files, identity, credentials) or the broker refused it."""


class CaptureError(EdgefaceError):
    """A capture source cannot be used as configured (wrong setting, missing optional package); the
    message says what to install or change. Not retried: fix the configuration."""


class SourceUnavailable(CaptureError):
    """A camera or folder is not there right now (unplugged, stream down, card not mounted): the daemon
    retries with backoff."""
