"""The unit's crypto-erase: destroy the device key first, then everything personal the unit stores.

Once the key is gone, whatever copy of the sealed data survives (flash blocks the controller has not erased
yet, a disk image) is ciphertext without a key. The data is then overwritten where it lies (files up to
``OVERWRITE_MAX`` bytes; larger ones are only ciphertext and are just deleted) and deleted: the outbox and
its WAL/SHM files, the daemon's state folder, saved images, the installed gallery, the enrollment workspace
and the unit's own key folder.

The report is honest: ``ok`` is False whenever a key source or a file could not be destroyed, and
``not_destroyed`` says what and what to do. A key that never lived in a file (the environment, a TPM-sealed
credential's source) cannot be destroyed from here and always makes the wipe incomplete.
"""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..logs import get_logger

if TYPE_CHECKING:
    from ..config import Config

log = get_logger(__name__)

OVERWRITE_MAX = 64 * 1024 * 1024
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


@dataclass
class WipeReport:
    """What :func:`wipe_unit` did: ``ok`` only when every key source and every file is gone."""

    ok: bool = True
    destroyed: list[str] = field(default_factory=list)  # key sources and data paths destroyed
    not_destroyed: list[str] = field(default_factory=list)  # "what: why, and what to do"
    notes: list[str] = field(default_factory=list)  # true and worth knowing, not a failure

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "destroyed": list(self.destroyed),
            "not_destroyed": list(self.not_destroyed),
            "notes": list(self.notes),
        }


def wipe_unit(config: Config, *, environ: dict[str, str] | None = None, enrollment: bool = True) -> WipeReport:
    """Crypto-erase the unit configured by ``config``: every device key source, then its personal data.

    ``enrollment``: also the enrollment workspace (``enroll.workspace``), where it exists; off for the demo,
    whose configuration names the workstation's own workspace.
    """
    from ..gallery.crypto import destroy_device_keys, destroy_file
    from .keys import own_key_file

    report = WipeReport()
    g = config.gallery
    keys = destroy_device_keys(g.key_file, g.key_env, g.key_credential, environ=environ)
    report.destroyed += [f"device key {k}" for k in keys.destroyed]
    report.not_destroyed += keys.remaining
    own = own_key_file(config)
    try:
        if destroy_file(own):
            report.destroyed.append(f"device key {own}")
    except OSError as e:
        report.not_destroyed.append(f"device key {own} could not be deleted ({e.strerror or e}): shred -u {own}")
    if not keys.destroyed and not keys.remaining and not report.destroyed:
        report.notes.append(
            "no device key was found at any configured source: if the key is kept elsewhere, destroy it there"
        )
    if not (config.protect.encrypt and g.encrypt):
        report.notes.append(
            "protect.encrypt or gallery.encrypt is off: some data was stored in plaintext and was overwritten and "
            "deleted, not crypto-erased (flash storage may keep old blocks readable)"
        )

    outbox = Path(config.outbox.path)
    for p in [outbox, *(outbox.with_name(outbox.name + s) for s in SQLITE_SIDE_FILES)]:
        _erase_path(p, report)
    for d in (config.run.state_dir, config.retention.dir, g.dir):
        _erase_path(Path(d), report)
    try:
        own.parent.rmdir()  # the unit's own key folder, if it holds nothing else
    except OSError:
        pass  # absent, or it holds other files (not ours to delete)
    workspace = Path(config.enroll.workspace).expanduser()
    if enrollment and workspace.exists():
        _erase_path(workspace, report)
    if config.capture.source == "folder":
        report.notes.append(
            f"photos in capture.folder.path ({config.capture.folder.path}) are the unit's input and were not "
            "touched: delete them too if they show faces (capture.folder.delete_processed removes each once its "
            "results left the unit)"
        )
    report.ok = not report.not_destroyed
    log.warning("unit.wiped", ok=report.ok, destroyed=len(report.destroyed), not_destroyed=report.not_destroyed)
    return report


def _refused_root(path: Path) -> str | None:
    """Why a configured folder must not be wiped whole (a slip in the configuration), or None."""
    try:
        resolved = path.resolve()
    except OSError:
        return None
    if resolved == Path(resolved.anchor) or resolved == Path.home().resolve() or len(resolved.parts) < 3:
        return f"{path} is a top-level or home folder: not wiped; fix the setting that names it"
    return None


def _erase_path(path: Path, report: WipeReport) -> None:
    """Overwrite and delete a file, or a folder's whole tree (its files, then the folders, then itself)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        report.not_destroyed.append(f"{path}: cannot be examined ({e.strerror or e}); delete it as root")
        return
    if stat.S_ISDIR(st.st_mode):
        why = _refused_root(path)
        if why:
            report.not_destroyed.append(why)
            return
        for root, dirs, files in os.walk(path, topdown=False):
            for name in files:
                _erase_file(Path(root) / name, report)
            for name in dirs:
                _remove_dir(Path(root) / name, report)
        _remove_dir(path, report)
        if not path.exists():
            report.destroyed.append(str(path))
    else:
        _erase_file(path, report)
        if not path.exists():
            report.destroyed.append(str(path))


def _remove_dir(path: Path, report: WipeReport) -> None:
    try:
        if path.is_symlink():
            path.unlink()
        else:
            path.rmdir()
    except OSError as e:
        if path.exists() and not any(x.startswith(f"{path}/") for x in report.not_destroyed):
            report.not_destroyed.append(f"{path}: folder not removed ({e.strerror or e})")


def _erase_file(path: Path, report: WipeReport) -> None:
    """Overwrite a regular file with random bytes (best effort), then unlink it (must succeed)."""
    try:
        st = os.lstat(path)
        if stat.S_ISREG(st.st_mode) and 0 < st.st_size <= OVERWRITE_MAX:
            try:
                with open(path, "r+b") as f:
                    left = st.st_size
                    while left > 0:
                        n = min(left, 1 << 20)
                        f.write(secrets.token_bytes(n))
                        left -= n
                    f.flush()
                    os.fsync(f.fileno())
            except OSError:
                pass  # cannot overwrite (read-only file or media): the unlink below is still required
        path.unlink()
    except FileNotFoundError:
        return
    except OSError as e:
        report.not_destroyed.append(f"{path}: could not be deleted ({e.strerror or e}); delete it as root")
