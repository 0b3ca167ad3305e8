"""A device's gallery store: installed versions, a staging area, and an atomic switch between them.

Layout under ``gallery.dir``::

    current -> versions/v0000000012     symlink: the gallery the unit matches against
    versions/v0000000012/               installed bundles (encrypted with the device key if configured)
    staging/v0000000013/                a download or delta in progress (``*.part`` files resume)

Installing is: verify everything in ``staging/vN`` (signature, policy, every file's SHA-256 after
decryption), rename it to ``versions/vN`` (same file system: atomic), point ``current.tmp`` at it and
rename that over ``current`` (atomic), fsync the folder, then delete older versions. A crash before the
last rename leaves ``current`` on the old gallery; :meth:`GalleryStore.recover` (run before every
sync and open) moves a half-installed version back to staging, where a re-run resumes it. Processes
that already opened the old gallery keep their open files and memory maps until they reopen.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..errors import BundleRejected
from ..logs import get_logger
from ..vision.settings import ModelsConfig
from .bundle import MANIFEST, SIGNATURE, PlainDir, Sink, check_acceptable, read_signed_manifest
from .crypto import DeviceKey, EncryptedDir, EncryptedWriter, destroy_file
from .manifest import FileEntry, Manifest, UnitEmbedder
from .match import LOCAL_INDEX, BundleReader, Gallery
from .settings import GalleryConfig

if TYPE_CHECKING:
    from ..vision.cards import ModelCard

log = get_logger(__name__)

VERSIONS, STAGING, CURRENT = "versions", "staging", "current"


# Crash-test hook: called with a point name at each step of an install (tests replace it in a child
# process to SIGKILL itself there). Does nothing in production.
def checkpoint(point: str) -> None:
    return None


def version_dir_name(version: int) -> str:
    return f"v{version:010d}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class PlainWriter:
    """Resumable plain file writer with the same interface as :class:`EncryptedWriter`."""

    def __init__(self, path: Path, *, resume: bool = False) -> None:
        self.path = Path(path)
        self.sha = hashlib.sha256()
        self.size = 0
        if resume and self.path.exists():
            with open(self.path, "rb") as f:
                while block := f.read(1 << 20):
                    self.sha.update(block)
                    self.size += len(block)
            self._f = open(self.path, "ab")
        else:
            self._f = open(self.path, "wb")

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self._f.write(data)

    def close(self) -> FileEntry:
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        return FileEntry(self.sha.hexdigest(), self.size)

    def abandon(self) -> None:
        self._f.flush()
        self._f.close()


def unit_embedder(card: ModelCard) -> UnitEmbedder:
    """The galleries a unit running ``card``'s embedder accepts: those of its embedding space."""
    spec = card.embedder
    if spec is None:
        raise BundleRejected("embedder_mismatch", f"model {card.id} is a {card.task}, not an embedder")
    models = (card.id, card.variant.of) if card.variant else (card.id,)
    return UnitEmbedder(card.sha256, spec.space, card.space_sha256, spec.dim, models)


class GalleryStore:
    def __init__(
        self,
        root: Path,
        *,
        trusted: Sequence[Ed25519PublicKey],
        key: DeviceKey | None = None,
        embedder_sha256: str | None = None,
        embedder: UnitEmbedder | None = None,
    ) -> None:
        self.root = Path(root)
        self.trusted = list(trusted)
        self.key = key
        # the galleries this unit accepts: ``embedder``'s embedding space, or just the file ``embedder_sha256``
        self.embedder = embedder or (UnitEmbedder(embedder_sha256) if embedder_sha256 is not None else None)
        self.embedder_sha256 = self.embedder.sha256 if self.embedder else None
        self.open_options: dict[str, object] = {}  # Gallery.open() settings (from_config fills them)
        for sub in (VERSIONS, STAGING):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)

    @classmethod
    def from_config(cls, gallery: GalleryConfig, models: ModelsConfig) -> GalleryStore:
        """The unit's store as configured: ``[gallery]`` dir, trusted keys, device key, search settings; the
        embedder of ``[models]`` (a bundle for another embedder is refused)."""
        from ..vision.cards import find_card
        from .crypto import load_device_key
        from .signing import load_trusted

        g = gallery
        card = find_card(models.embedder, models.dir, task="embedder")
        key = load_device_key(g.key_file, g.key_env, g.key_credential) if g.encrypt else None
        store = cls(g.dir, trusted=load_trusted(g.trusted_keys), key=key, embedder=unit_embedder(card))
        store.open_options = {
            "exact_max": g.exact_max,
            "search_k": g.search_k,
            "top_k": g.top_k,
            "threshold": g.threshold,
            "normalised_threshold": g.normalised_threshold,
        }
        return store

    # -- where things are -------------------------------------------------------------------------

    @property
    def key_bytes(self) -> bytes | None:
        return self.key.key if self.key else None

    def current_dir(self) -> Path | None:
        link = self.root / CURRENT
        if not link.is_symlink():
            return None
        target = (self.root / os.readlink(link)).resolve()
        return target if target.is_dir() else None

    def installed_manifest(self) -> Manifest | None:
        """The installed gallery's manifest (signature checked; files are checked when opened)."""
        d = self.current_dir()
        if d is None:
            return None
        data, sig = (d / MANIFEST).read_bytes(), (d / SIGNATURE).read_bytes()
        return read_signed_manifest(data, sig, self.trusted, str(d))

    def installed_version(self) -> int:
        m = self.installed_manifest()
        return m.gallery_version if m else 0

    def installed_manifest_sha256(self) -> str | None:
        d = self.current_dir()
        return hashlib.sha256((d / MANIFEST).read_bytes()).hexdigest() if d else None

    def staging(self, version: int) -> Path:
        d = self.root / STAGING / version_dir_name(version)
        d.mkdir(parents=True, exist_ok=True)
        return d

    # -- writing ----------------------------------------------------------------------------------

    def writer(self, path: Path, name: str, *, resume: bool = True) -> EncryptedWriter | PlainWriter:
        if self.key is not None:
            return EncryptedWriter(path, self.key.key, name, resume=resume)
        return PlainWriter(path, resume=resume)

    def sink(self, directory: Path) -> Sink:
        return EncryptedDir(directory, self.key.key) if self.key is not None else PlainDir(directory)

    def reader(self, directory: Path) -> BundleReader:
        return BundleReader(directory, self.key_bytes)

    # -- recovery, verification, install ----------------------------------------------------------

    def recover(self) -> None:
        """Undo what a crash left: a stray ``current.tmp``, half-installed or superseded versions."""
        (self.root / (CURRENT + ".tmp")).unlink(missing_ok=True)
        cur = self.current_dir()
        for d in sorted((self.root / VERSIONS).iterdir()):
            if cur is not None and d.resolve() == cur:
                continue
            if cur is None or _version_of(d) > _version_of(cur):
                dest = self.root / STAGING / d.name
                if not dest.exists():
                    d.rename(dest)
                    log.info("gallery.recover.unswapped", version=d.name)
                    continue
            shutil.rmtree(d, ignore_errors=True)
            log.info("gallery.recover.removed", version=d.name)
        installed = _version_of(cur) if cur is not None else 0
        for d in (self.root / STAGING).iterdir():
            if _version_of(d) <= installed:  # stale downloads of versions no longer wanted
                shutil.rmtree(d, ignore_errors=True) if d.is_dir() else d.unlink()

    def verify_staged(self, directory: Path) -> Manifest:
        """Everything a device checks before switching: signature, embedder, newer version, every file."""
        data = (directory / MANIFEST).read_bytes()
        sig_path = directory / SIGNATURE
        manifest = read_signed_manifest(
            data, sig_path.read_bytes() if sig_path.exists() else None, self.trusted, str(directory)
        )
        check_acceptable(manifest, embedder=self.embedder, newer_than=self.installed_version(), where=str(directory))
        from .match import _local_index_entry

        reader = self.reader(directory)
        local = _local_index_entry(directory)
        for name, want in manifest.files.items():
            expected = local if (name == "index.ann" and local is not None) else want
            if not (directory / name).exists():
                raise BundleRejected("missing_file", f"{directory / name} is missing; the download is incomplete")
            got = reader.digest(name)
            if got != expected:
                raise BundleRejected(
                    "hash_mismatch",
                    f"{directory / name}: content (SHA-256 {got.sha256[:16]}..., "
                    f"{got.size} bytes) does not match the signed manifest",
                )
        return manifest

    def install(self, staged: Path) -> Manifest:
        """Verify ``staged`` and make it the current gallery atomically."""
        manifest = self.verify_staged(staged)
        checkpoint("verified")
        final = self.root / VERSIONS / version_dir_name(manifest.gallery_version)
        if final.exists():
            shutil.rmtree(final)
        for leftover in staged.iterdir():  # partial downloads, delta patch files
            if leftover.name not in manifest.files and leftover.name not in (MANIFEST, SIGNATURE, LOCAL_INDEX):
                shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
        staged.rename(final)
        _fsync_dir(self.root / VERSIONS)
        _fsync_dir(self.root / STAGING)
        checkpoint("moved")
        tmp = self.root / (CURRENT + ".tmp")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(Path(VERSIONS) / final.name)
        checkpoint("linked")
        os.replace(tmp, self.root / CURRENT)
        _fsync_dir(self.root)
        checkpoint("swapped")
        self.recover()  # delete the old version(s)
        log.info(
            "gallery.installed", version=manifest.gallery_version, count=manifest.count, encrypted=self.key is not None
        )
        return manifest

    def open(self, **kwargs: Any) -> Gallery | None:
        """The current gallery, verified and ready to search; None if nothing is installed yet."""
        self.recover()
        d = self.current_dir()
        if d is None:
            return None
        return Gallery.open(
            d, self.trusted, key=self.key_bytes, embedder=self.embedder, **{**self.open_options, **kwargs}
        )

    def wipe(self) -> dict[str, object]:
        """Crypto-erase: destroy the device key first (the data is unreadable from then on), then the data.

        Only the key this store was opened with is destroyed here; ``edgeface gallery wipe`` destroys every
        configured key source (:func:`~edgeface.gallery.crypto.destroy_device_keys`) and then calls this.
        ``data_left`` lists what could not be deleted (empty when the folder is empty afterwards).
        """
        out: dict[str, object] = {"key_destroyed": False, "key_source": self.key.source if self.key else None}
        if self.key is not None and self.key.path is not None:
            out["key_destroyed"] = destroy_file(self.key.path)
        left: list[str] = []
        for child in list(self.root.iterdir()):
            try:
                if child.is_symlink() or child.is_file():
                    child.unlink()
                else:
                    _rmtree_noting(child, left)
            except OSError as e:
                left.append(f"{child}: {e}")
        out["data_left"] = left
        log.warning("gallery.wiped", dir=str(self.root), **out)
        return out


def _rmtree_noting(path: Path, left: list[str]) -> None:
    """Delete a tree, going on past what cannot be deleted and noting it in ``left``."""

    def note(fn: object, where: str, exc: object) -> None:
        err = exc[1] if isinstance(exc, tuple) else exc
        left.append(f"{where}: {err}")

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=note)
    else:  # Python 3.10, 3.11
        shutil.rmtree(path, onerror=note)


def _version_of(d: Path) -> int:
    try:
        return int(d.name.split("-")[0].lstrip("v"))
    except ValueError:
        return -1


def write_local_index_note(directory: Path, entry: FileEntry) -> None:
    import json

    (directory / LOCAL_INDEX).write_text(json.dumps({"sha256": entry.sha256, "size": entry.size}) + "\n")


__all__ = ["GalleryStore", "PlainWriter", "checkpoint", "version_dir_name", "write_local_index_note"]
