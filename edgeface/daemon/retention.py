"""Retention: the unit keeps only what the configuration asks for, and only until it is delivered.

With ``retention.save = "crop"`` or ``"frame"`` each result's face crop or whole frame is written (JPEG,
mode 0600, sealed with the device key's media sub-key when ``protect.encrypt`` is on: open one with
:meth:`Retention.read`) to ``retention.dir``; with ``capture.folder.delete_processed`` the imported photos are
managed too. Each such file is registered (SQLite, durable) *before* it is written, with the result
ids it belongs to. A sweep every ``retention.sweep_s`` asks the outbox which of those results are
still waiting; once none is (the broker acknowledged them, or the outbox's overflow policy or TTL
removed them), the file is deleted ``keep_after_ack_s`` later. Files in ``retention.dir`` that the
index does not know (left by a crash between writing and registering, or by an older configuration)
are deleted at start-up. ``max_bytes`` bounds what is saved; the results themselves never wait for it.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import EdgefaceError
from ..logs import get_logger
from ..outbox import Outbox
from ..protect.keys import sealer_for
from ..protect.sealed import is_sealed
from .metrics import Metrics

if TYPE_CHECKING:
    from ..config import Config

log = get_logger(__name__)


class Retention:
    """Saved images and managed photos, deleted after their results left the unit (see the module docstring)."""

    def __init__(self, config: Config, outbox: Outbox, metrics: Metrics | None = None) -> None:
        self.cfg = config.retention
        self.delete_sources = config.capture.source == "folder" and config.capture.folder.delete_processed
        self.dir = Path(self.cfg.dir)
        self.outbox = outbox
        self.metrics = metrics or Metrics()
        self._sealer = sealer_for(config, "media") if self.saving else None
        self._lock = threading.Lock()
        path = Path(config.run.state_dir) / "media.sqlite3"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS media (path TEXT PRIMARY KEY, kind TEXT NOT NULL, "
                "results TEXT NOT NULL, bytes INTEGER NOT NULL, created_at REAL NOT NULL, "
                "left_at REAL)"
            )
        except (OSError, sqlite3.Error) as e:
            raise EdgefaceError(f"retention index {path} cannot be opened ({e}); check run.state_dir") from e

    @property
    def saving(self) -> bool:
        return self.cfg.save != "none"

    def saved_bytes(self) -> int:
        with self._lock:
            return int(
                self._db.execute("SELECT COALESCE(SUM(bytes), 0) FROM media WHERE kind != 'source'").fetchone()[0]
            )

    # -- registering -------------------------------------------------------------------------------

    def save(self, image: np.ndarray | None, result_id: str, captured_at: float) -> Path | None:
        """Write ``image`` for ``result_id`` if the configuration keeps images; returns the file or None."""
        if not self.saving or image is None:
            return None
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(image).save(buf, "JPEG", quality=90)
        day = time.strftime("%Y%m%d", time.gmtime(captured_at))
        path = self.dir / day / f"{result_id}-{self.cfg.save}.jpg"
        data = buf.getvalue() if self._sealer is None else self._sealer.seal(buf.getvalue(), path.name.encode())
        if self.saved_bytes() + len(data) > self.cfg.max_bytes:
            self.metrics.inc("edgeface_media_not_saved_total")
            log.warning(
                "retention.full",
                result=result_id,
                max_bytes=self.cfg.max_bytes,
                hint="the image is not saved (the result is stored as usual); raise retention.max_bytes "
                "or lower keep_after_ack_s",
            )
            return None
        self._register(path, self.cfg.save, [result_id], len(data), left=False)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        self.metrics.inc("edgeface_media_saved_total", kind=self.cfg.save)
        return path

    def read(self, path: Path) -> bytes:
        """The JPEG of a saved image, opened with the device key if it was sealed."""
        data = Path(path).read_bytes()
        if self._sealer is None or not is_sealed(data):
            return data
        return self._sealer.open(data, Path(path).name.encode())

    def track_source(self, path: Path, result_ids: list[str]) -> None:
        """An imported photo is processed: delete it once its results left (if the config says so)."""
        if not self.delete_sources:
            return
        try:
            size = Path(path).stat().st_size
        except FileNotFoundError:
            return
        self._register(Path(path), "source", result_ids, size, left=not result_ids)

    def _register(self, path: Path, kind: str, results: list[str], size: int, *, left: bool) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO media (path, kind, results, bytes, created_at, left_at) VALUES (?, ?, ?, ?, ?, ?)",
                (str(path), kind, json.dumps(results), size, time.time(), time.time() if left else None),
            )

    # -- sweeping ----------------------------------------------------------------------------------

    def sweep(self, now: float | None = None) -> int:
        """Mark files whose results left the outbox, delete those past keep_after_ack_s; returns deletions."""
        now = time.time() if now is None else now
        with self._lock:
            waiting = self._db.execute("SELECT path, results FROM media WHERE left_at IS NULL").fetchall()
        if waiting:
            ids = {p: json.loads(r) for p, r in waiting}
            still = self.outbox.pending_among({i for v in ids.values() for i in v})
            gone = [(now, p) for p, v in ids.items() if not (set(v) & still)]
            if gone:
                with self._lock:
                    self._db.executemany("UPDATE media SET left_at = ? WHERE path = ?", gone)
        with self._lock:
            due = self._db.execute(
                "SELECT path, kind FROM media WHERE left_at IS NOT NULL AND left_at <= ?",
                (now - self.cfg.keep_after_ack_s,),
            ).fetchall()
        deleted = 0
        for path, kind in due:
            try:
                Path(path).unlink()
                deleted += 1
                self.metrics.inc("edgeface_media_deleted_total", kind=kind)
                log.info("retention.deleted", file=path, kind=kind)
            except FileNotFoundError:
                pass
            except OSError as e:
                log.error(
                    "retention.delete_failed",
                    file=path,
                    error=str(e),
                    hint="check the permissions of the folder; the file is retried at the next sweep",
                )
                continue
            with self._lock:
                self._db.execute("DELETE FROM media WHERE path = ?", (path,))
        return deleted

    def remove_orphans(self) -> int:
        """Delete files in retention.dir that the index does not know (never kept without a reason)."""
        if not self.dir.is_dir():
            return 0
        with self._lock:
            known = {r[0] for r in self._db.execute("SELECT path FROM media WHERE kind != 'source'")}
        removed = 0
        for p in sorted(self.dir.rglob("*")):
            if p.is_file() and str(p) not in known:
                p.unlink()
                removed += 1
        if removed:
            log.warning("retention.orphans_removed", files=removed, dir=str(self.dir))
        return removed

    def pending(self) -> dict[str, int]:
        """Files held, by kind (for status)."""
        with self._lock:
            return dict(self._db.execute("SELECT kind, COUNT(*) FROM media GROUP BY kind").fetchall())

    def close(self) -> None:
        with self._lock:
            self._db.close()
