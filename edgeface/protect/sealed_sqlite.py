"""An SQLite database kept as one sealed file: opened into memory, sealed back whole when saved.

SQLite has no encryption of its own, and a WAL or journal file would hold plaintext pages beside any
sealed copy. So on a unit the enrollment workspace (identity names, image paths, consent, embeddings) never
touches the card in the clear: :func:`open_sealed` decrypts the file into an in-memory database
(``sqlite3.Connection.deserialize``, Python 3.11+) and :func:`save_sealed` serializes it and writes it
sealed, atomically. The cost is that work not yet saved is lost if the process dies; the workspace is a
cache plus provenance, so a rerun of ``edgeface enroll`` restores it.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import EdgefaceError
from ..logs import get_logger

if TYPE_CHECKING:
    from ..config import Config
    from .sealed import Sealer

log = get_logger(__name__)

SIDE_FILES = ("-wal", "-shm", "-journal")


def enroll_sealer(config: Config) -> Sealer | None:
    """The sealer for the enrollment workspace: only on a unit, i.e. protect.encrypt on and a device key
    source configured (never a key created for the purpose); None elsewhere (a central machine, the server),
    where the workspace stays plain SQLite."""
    from .keys import key_configured, sealer_for

    if not (config.protect.encrypt and key_configured(config)):
        return None
    return sealer_for(config, "enroll", create=False)


def open_sealed(path: Path, sealer: Sealer, *, plaintext: Path | None = None) -> sqlite3.Connection:
    """An in-memory connection holding the database sealed at ``path`` (empty when there is none yet).

    A plaintext database at ``plaintext`` (from before the unit had a key) is converted once: sealed to
    ``path``, then it and its WAL/SHM files are overwritten and deleted. Both present is refused.
    """
    if sys.version_info < (3, 11):
        raise EdgefaceError(
            "a sealed enrollment workspace needs Python 3.11 or newer (sqlite3 serialize/deserialize); "
            "upgrade Python, or enroll on a central machine without a device key"
        )
    else:
        path = Path(path)
        if plaintext is not None and Path(plaintext).is_file():
            if path.exists():
                raise EdgefaceError(
                    f"{path.parent} holds both a sealed workspace ({path.name}) and a plaintext one "
                    f"({Path(plaintext).name}): keep one; delete the other with `shred -u`"
                )
            _convert(Path(plaintext), path, sealer)
        db = sqlite3.connect(":memory:")
        if path.exists():
            db.deserialize(sealer.read_file(path))
        return db


def save_sealed(db: sqlite3.Connection, path: Path, sealer: Sealer) -> None:
    """Commit ``db`` and write it whole, sealed, to ``path`` (tmp file, fsync, rename)."""
    if sys.version_info >= (3, 11):
        db.commit()
        sealer.write_file(Path(path), db.serialize())


def _convert(plain: Path, sealed: Path, sealer: Sealer) -> None:
    if sys.version_info >= (3, 11):
        from ..gallery.crypto import destroy_file

        src = sqlite3.connect(plain)
        try:
            src.execute("PRAGMA journal_mode=DELETE")  # folds the WAL in; the image then deserializes
            data = src.serialize()
        finally:
            src.close()
        sealer.write_file(sealed, data)
        for p in [plain, *(plain.with_name(plain.name + s) for s in SIDE_FILES)]:
            destroy_file(p)
        log.warning(
            "protect.workspace_sealed",
            workspace=str(plain.parent),
            hint="the plaintext workspace was sealed under the device key, overwritten and deleted (flash "
            "storage may keep old blocks: wipe the card if it held personal data before)",
        )
