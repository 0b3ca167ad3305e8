"""Encryption at rest of a device's installed gallery (AES-256-GCM, streamed in chunks).

**What it protects against:** someone who gets the unit's storage while the unit is off or the key is
gone — a stolen or lost unit or SD card, a disk image taken for repair, a card pulled and read in
another computer, a unit decommissioned with ``edgeface gallery wipe``. Without the device key the
gallery (biometric vectors, names, provenance) is ciphertext, and any change to it is detected (GCM
authenticates every chunk, the chunk order and the end of the file).

**What it does not protect against:** anyone with root on the running unit (the key and the decrypted
gallery are in its memory, and an attacker can read them or the key source); the key stored beside the
data (a key file on the same SD card protects only copies of the gallery made without the key file —
use a TPM-sealed systemd credential or a key provisioned elsewhere); swap (decrypted pages live in RAM
via ``memfd``; run units without swap or with encrypted swap); the manifest, which stays readable (it
holds counts, version and hashes, no personal data); traffic analysis of sync downloads (use HTTPS).

File format: ``MAGIC | salt(16) | chunk_size(u32 BE)`` then chunks of ``chunk_size`` plaintext bytes,
each AES-GCM ciphertext+tag. The file key is HKDF-SHA256(device key, salt); chunk ``i`` uses nonce
``i (u64 BE) | last (1 byte) | 000`` and the header plus the file's name as associated data, so chunks
cannot be reordered, dropped, truncated at a chunk boundary, or moved to another file name.

Device key sources, first found wins: a systemd credential (``$CREDENTIALS_DIRECTORY/<key_credential>``,
which ``systemd-creds encrypt --with-key=tpm2`` seals to the unit's TPM), the environment variable
``key_env`` (64 hex digits), the file ``key_file`` (32 bytes, mode 0600).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import GalleryError, GalleryKeyError
from .manifest import FileEntry
from .signing import check_private_permissions, write_private_file

MAGIC = b"EFGCM01\n"
HEADER = struct.Struct(">8s16sI")
CHUNK = 1 << 20
TAG = 16
KEY_BYTES = 32


class DecryptError(GalleryError):
    """A file does not decrypt with this device key: wrong key, or the file was altered or truncated."""


@dataclass(frozen=True)
class DeviceKey:
    key: bytes
    source: str  # where it came from, for logs and `wipe`
    path: Path | None = None  # the key file or credential file, if it came from one

    def __repr__(self) -> str:  # never print the key
        return f"DeviceKey(source={self.source!r})"


def generate_key_file(path: Path) -> None:
    write_private_file(Path(path), secrets.token_bytes(KEY_BYTES))


def _parse(raw: bytes, where: str) -> bytes:
    text = raw.strip()
    if len(raw) == KEY_BYTES:
        return raw
    try:
        key = bytes.fromhex(text.decode())
    except (ValueError, UnicodeDecodeError):
        key = b""
    if len(key) != KEY_BYTES:
        raise GalleryKeyError(
            f"{where} is not a device key: expected {KEY_BYTES} bytes or {2 * KEY_BYTES} hex "
            "digits; create one with `edgeface gallery keygen --device-key FILE`"
        )
    return key


def load_device_key(
    key_file: Path | None = None,
    key_env: str = "EDGEFACE_GALLERY_KEY",
    key_credential: str = "edgeface-gallery-key",
    environ: dict[str, str] | None = None,
) -> DeviceKey:
    """The device key from the first source present (see the module docstring)."""
    env = os.environ if environ is None else environ
    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    if cred_dir and key_credential and (Path(cred_dir) / key_credential).is_file():
        p = Path(cred_dir) / key_credential
        return DeviceKey(_parse(p.read_bytes(), str(p)), "systemd-credential", p)
    if key_env and env.get(key_env):
        return DeviceKey(_parse(env[key_env].encode(), f"${key_env}"), "environment")
    if key_file is not None:
        p = Path(key_file)
        try:
            check_private_permissions(p)
            return DeviceKey(_parse(p.read_bytes(), str(p)), "file", p)
        except FileNotFoundError:
            raise GalleryKeyError(
                f"device key file {p} does not exist; create it with `edgeface gallery keygen --device-key {p}`"
            ) from None
    raise GalleryKeyError(
        "gallery.encrypt is on but no device key was found: provide a systemd credential "
        f"'{key_credential}', set ${key_env}, or set gallery.key_file (or turn gallery.encrypt off)"
    )


def _file_key(key: bytes, salt: bytes) -> AESGCM:
    k = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"edgeface-gallery-file-v1").derive(key)
    return AESGCM(k)


def _nonce(i: int, last: bool) -> bytes:
    return struct.pack(">QB3x", i, 1 if last else 0)


class EncryptedWriter:
    """Write plaintext, store ciphertext; tracks the plaintext SHA-256 and size.

    Resumable: reopening a partial file keeps its complete chunks (none of them is the last one, which
    is only written by :meth:`close`), re-hashing them by decrypting; ``size`` says where to resume.
    """

    def __init__(self, path: Path, key: bytes, name: str, *, resume: bool = False) -> None:
        self.path, self.name = Path(path), name
        self.sha = hashlib.sha256()
        self.size = 0
        self._buf = bytearray()
        self._index = 0
        self._f: BinaryIO
        if not (resume and self._resume(key)):
            salt = secrets.token_bytes(16)
            header = HEADER.pack(MAGIC, salt, CHUNK)
            self._f = open(self.path, "wb")
            self._f.write(header)
            self._init_cipher(key, header, salt)

    def _resume(self, key: bytes) -> bool:
        """Keep the complete chunks of an existing partial file; False if there is nothing to keep."""
        if not self.path.exists() or self.path.stat().st_size < HEADER.size:
            return False
        f = open(self.path, "r+b")
        header = f.read(HEADER.size)
        magic, salt, chunk = HEADER.unpack(header)
        if magic != MAGIC or chunk != CHUNK:
            f.close()
            return False
        self._f = f
        self._init_cipher(key, header, salt)
        whole = (self.path.stat().st_size - HEADER.size) // (CHUNK + TAG)
        for i in range(whole):
            try:
                pt = self._aead.decrypt(_nonce(i, False), f.read(CHUNK + TAG), self._aad)
            except InvalidTag:  # another key, or damage: keep what verified
                whole = i
                break
            self.sha.update(pt)
            self.size += len(pt)
        self._index = whole
        f.seek(HEADER.size + whole * (CHUNK + TAG))
        f.truncate()
        return True

    def _init_cipher(self, key: bytes, header: bytes, salt: bytes) -> None:
        self._aead = _file_key(key, salt)
        self._aad = header + self.name.encode()

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        self._buf += data
        while len(self._buf) > CHUNK:  # keep at least one byte back: the last chunk is written by close()
            self._f.write(self._aead.encrypt(_nonce(self._index, False), bytes(self._buf[:CHUNK]), self._aad))
            del self._buf[:CHUNK]
            self._index += 1
        return len(data)

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> FileEntry:
        self._f.write(self._aead.encrypt(_nonce(self._index, True), bytes(self._buf), self._aad))
        self._buf.clear()
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        return FileEntry(self.sha.hexdigest(), self.size)

    def abandon(self) -> None:
        """Stop without finishing (the complete chunks stay for a resume)."""
        self._f.flush()
        self._f.close()


def decrypt_chunks(path: Path, key: bytes, name: str) -> Iterator[bytes]:
    """The plaintext of an encrypted file, chunk by chunk; raises DecryptError on any mismatch."""
    with open(path, "rb") as f:
        header = f.read(HEADER.size)
        if len(header) != HEADER.size:
            raise DecryptError(f"{path} is not an encrypted gallery file (too short)")
        magic, salt, chunk = HEADER.unpack(header)
        if magic != MAGIC:
            raise DecryptError(
                f"{path} is not an encrypted gallery file (no {MAGIC!r} header); was the "
                "gallery installed with gallery.encrypt off?"
            )
        aead, aad = _file_key(key, salt), header + name.encode()
        i = 0
        ct = f.read(chunk + TAG)
        while True:
            nxt = f.read(chunk + TAG)
            last = not nxt
            try:
                yield aead.decrypt(_nonce(i, last), ct, aad)
            except InvalidTag:
                raise DecryptError(
                    f"{path} does not decrypt with this device key (chunk {i}): the key is wrong, or the file "
                    "was altered or truncated"
                ) from None
            if last:
                return
            ct, i = nxt, i + 1


class EncryptedDir:
    """A bundle sink that stores every file encrypted with the device key."""

    def __init__(self, directory: Path, key: bytes) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key = key

    def write(self, name: str, chunks: Iterable[bytes]) -> FileEntry:
        w = EncryptedWriter(self.dir / name, self.key, name)
        for c in chunks:
            w.write(c)
        return w.close()

    def build(self, name: str, make: Callable[[Path], None]) -> FileEntry:
        """Tools that need a real file (Annoy) write to RAM (memfd); only ciphertext reaches the disk."""
        fd = os.memfd_create(f"edgeface-{name}", os.MFD_CLOEXEC)
        try:
            make(Path(f"/proc/self/fd/{fd}"))
            with os.fdopen(os.dup(fd), "rb") as f:
                f.seek(0)
                return self.write(name, iter(lambda: f.read(CHUNK), b""))
        finally:
            os.close(fd)


class RamFile:
    """Decrypted plaintext held in an anonymous RAM file (memfd), openable and mappable by path."""

    def __init__(self, name: str) -> None:
        self.fd = os.memfd_create(f"edgeface-{name}", os.MFD_CLOEXEC)
        self.path = Path(f"/proc/self/fd/{self.fd}")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self) -> None:
        self.close()


def decrypt_to_ram(path: Path, key: bytes, name: str) -> tuple[RamFile, FileEntry]:
    ram = RamFile(name)
    h, n = hashlib.sha256(), 0
    with os.fdopen(os.dup(ram.fd), "wb") as out:
        for block in decrypt_chunks(path, key, name):
            h.update(block)
            n += len(block)
            out.write(block)
    return ram, FileEntry(h.hexdigest(), n)


def plain_stream(f: BinaryIO) -> Iterator[bytes]:
    return iter(lambda: f.read(CHUNK), b"")


def destroy_file(path: Path) -> bool:
    """Overwrite a (small) key file with random bytes, fsync, and unlink it. Returns False if absent.

    The overwrite is best effort (a read-only file the owner may still delete is made writable first);
    the unlink is not: an OSError means the key file is still there.

    On flash storage an overwrite may land on another block, leaving the old one until the controller
    erases it: that is why the key, not the gallery, is what is destroyed, and why a TPM-sealed key is
    preferred (see docs/gallery.md).
    """
    p = Path(path)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        return False
    try:
        if not os.access(p, os.W_OK):
            os.chmod(p, 0o600)
        with open(p, "r+b") as f:
            f.write(secrets.token_bytes(max(size, KEY_BYTES)))
            f.flush()
            os.fsync(f.fileno())
    except OSError:
        pass  # cannot overwrite (e.g. read-only media): deleting it is still the erase we can do
    p.unlink()
    return True


@dataclass
class KeyErasure:
    """What a wipe did to the device key: where it was destroyed, and every source that may still hold it
    (each with what the operator must do). The erase is complete only if ``remaining`` is empty."""

    destroyed: list[str]
    remaining: list[str]

    @property
    def complete(self) -> bool:
        return not self.remaining


def destroy_device_keys(
    key_file: Path | None = None,
    key_env: str = "EDGEFACE_GALLERY_KEY",
    key_credential: str = "edgeface-gallery-key",
    environ: Mapping[str, str] | None = None,
) -> KeyErasure:
    """Destroy every device key source the unit is configured with (not only the one that would load first).

    The key file is destroyed whenever it is a regular file at ``key_file``, even if its permissions are
    wrong (a key readable by others is still the key). A key in the environment, or a systemd credential
    (whose sealed source outside the service is decrypted again at every start), cannot be destroyed
    from here: they are reported in ``remaining`` with what to do.
    """
    env = os.environ if environ is None else environ
    out = KeyErasure([], [])
    _erase_credential(env, key_credential, out)
    if key_env and env.get(key_env):
        out.remaining.append(
            f"${key_env} (environment variable) holds the key: unset it where it is set (the "
            "service's Environment=/EnvironmentFile=, a shell profile) and delete it from any "
            "file it was copied from"
        )
    if key_file is not None:
        _erase_key_file(Path(key_file), out)
    return out


def _erase_credential(env: Mapping[str, str], name: str, out: KeyErasure) -> None:
    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    if not (cred_dir and name and (Path(cred_dir) / name).exists()):
        return
    p = Path(cred_dir) / name
    copy = "its decrypted copy was deleted"
    try:
        destroy_file(p)
        out.destroyed.append(str(p))
    except OSError as e:
        copy = f"its decrypted copy {p} could not be deleted ({e.strerror or e})"
    out.remaining.append(
        f"systemd credential '{name}' ({copy}): the service decrypts it again from its sealed source at every "
        f"start; as root delete that source (LoadCredentialEncrypted={name}, usually "
        f"/etc/credstore.encrypted/{name}), remove the line from the service, then restart it"
    )


def _erase_key_file(p: Path, out: KeyErasure) -> None:
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return
    except OSError as e:
        out.remaining.append(f"key file {p} cannot be examined ({e.strerror or e}): delete it as root")
        return
    if not stat.S_ISREG(st.st_mode):
        out.remaining.append(
            f"{p} (gallery.key_file) is not a regular file (a link or device); not touched: "
            "find the key it leads to and delete it"
        )
        return
    try:
        destroy_file(p)
    except OSError as e:
        out.remaining.append(f"key file {p} could not be deleted ({e.strerror or e}): delete it as root (shred -u {p})")
    else:
        out.destroyed.append(str(p))
