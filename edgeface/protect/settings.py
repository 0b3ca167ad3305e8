"""The unit's protection at rest (``[protect]``), assembled into :class:`edgeface.config.Config`."""

from __future__ import annotations

from dataclasses import dataclass

from ..config.fields import setting


@dataclass(frozen=True)
class ProtectConfig:
    """Encryption at rest of everything personal on the unit (outbox payloads, saved images, the enrollment
    workspace) under sub-keys of the device key, the key the gallery uses (gallery.key_file, gallery.key_env,
    gallery.key_credential). See docs/protection.md for what this does and does not protect against."""

    encrypt: bool = setting(
        True,
        "Encrypt result payloads (candidates, scores, crops) in the outbox and saved images with AES-256-GCM "
        "under keys derived from the device key. Off: they are stored in plaintext (a seized card gives them "
        "away).",
    )
    create_key: bool = setting(
        True,
        "When no device key source is configured (no gallery.key_file, no $gallery.key_env, no systemd "
        "credential), create one as keys/device.key beside outbox.path on first start. Such a key sits on the "
        "same card as the data: `edgeface unit wipe` can crypto-erase, but a seized card still gives "
        "everything away. Keep the key off the card: a TPM-sealed credential, or gallery.key_file on removable "
        "media. Off: the unit refuses to start without a configured key.",
    )
