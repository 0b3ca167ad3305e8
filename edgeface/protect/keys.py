"""The unit's device key, as protection at rest finds it, and the sealers derived from it.

There is one device key per unit, the gallery's (:func:`edgeface.gallery.crypto.load_device_key`): a
TPM-sealed systemd credential, the environment variable, or ``gallery.key_file`` (which may sit on removable
media). Only when none of those is configured, and ``protect.create_key`` is on, the unit makes its own key
file, ``keys/device.key`` beside ``outbox.path``; that key lies on the same card as the data (logged as a
warning at every start), so it buys a working crypto-erase, not protection of a seized card.

A configured key that is missing is an error, never replaced: a new key would orphan everything sealed
under the old one (the key media not inserted, a credential not loaded).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import GalleryKeyError
from ..logs import get_logger

if TYPE_CHECKING:
    from ..config import Config
    from ..gallery.crypto import DeviceKey
    from .sealed import Sealer

log = get_logger(__name__)

OWN_KEY = Path("keys") / "device.key"


def own_key_file(config: Config) -> Path:
    """Where the unit keeps the key it made itself (used only when no key source is configured)."""
    return Path(config.outbox.path).parent / OWN_KEY


def key_configured(config: Config, environ: dict[str, str] | None = None) -> bool:
    """True when a device key source is configured: a key file, the environment variable, a credential."""
    g = config.gallery
    env = os.environ if environ is None else environ
    cred = env.get("CREDENTIALS_DIRECTORY")
    return bool(
        g.key_file is not None
        or (g.key_env and env.get(g.key_env))
        or (cred and g.key_credential and (Path(cred) / g.key_credential).is_file())
    )


def load_unit_key(config: Config, *, create: bool = True, environ: dict[str, str] | None = None) -> DeviceKey:
    """The device key (see the module docstring); creates the unit's own key file only where allowed.

    Raises :class:`GalleryKeyError` with what to do when no key can be had.
    """
    from ..gallery.crypto import DeviceKey, _parse, generate_key_file, load_device_key
    from ..gallery.signing import check_private_permissions

    g = config.gallery
    if key_configured(config, environ):
        key = load_device_key(g.key_file, g.key_env, g.key_credential, environ=environ)
        _warn_if_beside_data(config, key)
        return key
    own = own_key_file(config)
    if not own.exists():
        if not (create and config.protect.create_key):
            raise GalleryKeyError(
                "protect.encrypt is on but no device key is configured: set gallery.key_file (ideally on "
                "removable media), seal one to the TPM as systemd credential "
                f"'{g.key_credential}', or set ${g.key_env}; or turn protect.create_key on"
            )
        own.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        generate_key_file(own)
        log.warning("protect.key_created", key_file=str(own), hint=_BESIDE)
    check_private_permissions(own)
    key = DeviceKey(_parse(own.read_bytes(), str(own)), "own-file", own)
    _warn_if_beside_data(config, key)
    return key


_BESIDE = (
    "the device key is on the same storage as the data it protects: a seized card gives everything away; "
    "keep it off the card (TPM-sealed systemd credential, or gallery.key_file on removable media; "
    "docs/protection.md)"
)


def _warn_if_beside_data(config: Config, key: DeviceKey) -> None:
    if key.path is None or key.source == "systemd-credential":
        return
    try:
        same = key.path.stat().st_dev == Path(config.outbox.path).parent.stat().st_dev
    except OSError:
        return
    if same:
        log.warning("protect.key_beside_data", key_file=str(key.path), hint=_BESIDE)


def sealer_for(config: Config, purpose: str, *, create: bool = True) -> Sealer | None:
    """The sealer for ``purpose`` ("outbox", "media", "enroll"), or None when protect.encrypt is off."""
    if not config.protect.encrypt:
        return None
    from .sealed import Sealer

    return Sealer(load_unit_key(config, create=create).key, purpose)
