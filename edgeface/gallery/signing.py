"""Ed25519 signatures over gallery manifests (the central server signs, devices verify).

Key files are PEM: the private key PKCS#8 (mode 0600, refused if group or others can read it, as ssh
does), the public key SubjectPublicKeyInfo. A signature file is a small JSON document naming the key
(``key_id``: first 16 hex digits of the SHA-256 of the raw public key), so a fleet can trust an old and
a new key during a key rotation.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import BundleRejected, GalleryKeyError

ALGORITHM = "ed25519"


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def write_private_file(path: Path, data: bytes) -> None:
    """Create a file only its owner can read, refusing to overwrite an existing one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def generate_keypair(private_path: Path, public_path: Path) -> str:
    """Write a new signing key pair; returns its key id. Never overwrites an existing key."""
    for p in (private_path, public_path):
        if p.exists():
            raise GalleryKeyError(f"{p} already exists; refusing to overwrite a key (move it away first)")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    write_private_file(private_path, pem)
    public_path.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return key_id(key.public_key())


def check_private_permissions(path: Path) -> None:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise GalleryKeyError(
            f"{path} is accessible by group or others (mode {stat.filemode(mode)}); a private key must be "
            f"readable by its owner only: chmod 600 {path}"
        )


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        check_private_permissions(path)
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as e:
        raise GalleryKeyError(f"cannot read signing key {path}: {e}; create one with `edgeface gallery keygen`") from e
    except (ValueError, TypeError) as e:
        raise GalleryKeyError(f"{path} is not an unencrypted PEM private key: {e}") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise GalleryKeyError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except OSError as e:
        raise GalleryKeyError(f"cannot read trusted key {path}: {e}") from e
    except ValueError as e:
        raise GalleryKeyError(f"{path} is not a PEM public key: {e}") from e
    if not isinstance(key, Ed25519PublicKey):
        raise GalleryKeyError(f"{path} holds a {type(key).__name__}, not an Ed25519 public key")
    return key


def load_trusted(paths: Sequence[Path]) -> list[Ed25519PublicKey]:
    if not paths:
        raise GalleryKeyError(
            "no trusted gallery keys configured: set gallery.trusted_keys to the central server's public "
            "key file(s) (PEM), e.g. --set 'gallery.trusted_keys=[\"/etc/edgeface/gallery.pub\"]'"
        )
    return [load_public_key(Path(p)) for p in paths]


def sign(data: bytes, key: Ed25519PrivateKey) -> bytes:
    """The signature file's content for ``data``."""
    doc = {
        "algorithm": ALGORITHM,
        "key_id": key_id(key.public_key()),
        "signature": base64.b64encode(key.sign(data)).decode(),
    }
    return (json.dumps(doc, sort_keys=True) + "\n").encode()


def verify(
    data: bytes, signature_file: bytes | None, trusted: Sequence[Ed25519PublicKey], what: str = "manifest"
) -> str:
    """Check ``data`` against a signature file; returns the key id that signed it.

    Raises :class:`BundleRejected` with reason "unsigned" or "bad_signature".
    """
    if signature_file is None:
        raise BundleRejected("unsigned", f"{what} has no signature file; refusing an unsigned gallery")
    try:
        doc = json.loads(signature_file)
        if doc.get("algorithm") != ALGORITHM:
            raise ValueError(f"algorithm {doc.get('algorithm')!r}")
        sig = base64.b64decode(doc["signature"], validate=True)
        kid = str(doc.get("key_id", ""))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise BundleRejected("bad_signature", f"{what}: unreadable signature file ({e})") from None
    for pub in trusted:
        try:
            pub.verify(sig, data)
            return key_id(pub)
        except InvalidSignature:
            continue
    known = ", ".join(key_id(p) for p in trusted)
    raise BundleRejected(
        "bad_signature",
        f"{what}: the signature (key {kid}) does not verify with any trusted key ({known}); the bundle was "
        "altered or signed by a key this unit does not trust",
    )
