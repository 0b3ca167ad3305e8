"""Sealed records and files: AES-256-GCM under a key derived (HKDF-SHA256) from the device key for one purpose.

A sealed blob is ``MAGIC(4) | nonce(12) | ciphertext+tag``. Each record gets a fresh random 96-bit nonce, so
one sub-key may seal a few billion records before nonces risk repeating (NIST SP 800-38D's 2^32 bound):
decades of results on a unit. The caller's associated data (a row id, a file name) is authenticated, not
stored: a record moved to another row or file does not open. Different purposes ("outbox", "media",
"enroll") get different sub-keys, so a key leaked for one use opens nothing else.

``cryptography`` is imported when a :class:`Sealer` is made, so the outbox (which checks :func:`is_sealed`)
stays light to import for commands that never open a record.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from ..errors import EdgefaceError

MAGIC = b"EFS1"
NONCE = 12
TAG = 16
OVERHEAD = len(MAGIC) + NONCE + TAG
_HEAD, _BODY = len(MAGIC), len(MAGIC) + NONCE  # where the nonce starts and ends


class SealError(EdgefaceError):
    """A sealed record or file does not open: another device key, or it was altered, truncated or moved."""


def sub_key(device_key: bytes, purpose: str) -> bytes:
    """The 32-byte key for ``purpose`` derived from the device key (HKDF-SHA256, no salt: deterministic)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    info = f"edgeface-protect-{purpose}-v1".encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(device_key)


def is_sealed(blob: bytes) -> bool:
    """True when ``blob`` starts like a sealed record (a plaintext JSON document or JPEG never does)."""
    return bytes(blob[: len(MAGIC)]) == MAGIC


class Sealer:
    """Seal and open records for one purpose. Thread-safe (AESGCM holds no per-call state)."""

    def __init__(self, device_key: bytes, purpose: str) -> None:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.purpose = purpose
        self._aead = AESGCM(sub_key(device_key, purpose))
        self._invalid: type[Exception] = InvalidTag

    def __repr__(self) -> str:  # never print key material
        return f"Sealer(purpose={self.purpose!r})"

    def seal(self, data: bytes, aad: bytes = b"") -> bytes:
        """``data`` encrypted and authenticated, bound to ``aad`` (which must be given again to open it)."""
        nonce = secrets.token_bytes(NONCE)
        return MAGIC + nonce + self._aead.encrypt(nonce, bytes(data), MAGIC + aad)

    def open(self, blob: bytes, aad: bytes = b"") -> bytes:
        """The plaintext of a sealed ``blob``; :class:`SealError` if it is not sealed, or does not open."""
        if not is_sealed(blob) or len(blob) < OVERHEAD:
            raise SealError(f"not a sealed {self.purpose} record (no {MAGIC!r} header, or too short)")
        view = memoryview(blob)  # no copies of the ciphertext
        try:
            return self._aead.decrypt(view[_HEAD:_BODY], view[_BODY:], MAGIC + aad)
        except self._invalid:
            raise SealError(
                f"a sealed {self.purpose} record does not open with this device key: the key is another unit's or "
                "was replaced, or the record was altered or moved"
            ) from None

    def write_file(self, path: Path, data: bytes) -> None:
        """Write ``data`` sealed to ``path`` (mode 0600, atomically, fsynced); bound to the file's name."""
        path = Path(path)
        blob = self.seal(data, path.name.encode())
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def read_file(self, path: Path) -> bytes:
        """The plaintext of a file written by :meth:`write_file` (:class:`SealError` if it does not open)."""
        path = Path(path)
        try:
            return self.open(path.read_bytes(), path.name.encode())
        except SealError as e:
            raise SealError(f"{path}: {e}") from None
