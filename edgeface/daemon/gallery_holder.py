"""The gallery the match stage searches, reopened there (one thread) after a sync installed a new one."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from ..errors import GalleryError
from ..logs import get_logger

if TYPE_CHECKING:
    from ..config import Config
    from ..gallery.match import Gallery
    from ..gallery.store import GalleryStore

log = get_logger(__name__)


class GalleryHolder:
    """The installed gallery (None: none usable); :meth:`current` reopens it once :attr:`changed` is set."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.store: GalleryStore | None = None
        self.gallery: Gallery | None = None
        self.changed = threading.Event()
        self.changed.set()  # open at first use
        self.error = ""

    def open_store(self) -> GalleryStore:
        """The gallery store (opened once; the sync installs into the same one)."""
        if self.store is None:
            from ..gallery.store import GalleryStore

            self.store = GalleryStore.from_config(self.config.gallery, self.config.models)
        return self.store

    def current(self) -> Gallery | None:
        if self.changed.is_set():
            self.changed.clear()
            self._reopen()
        return self.gallery

    def _reopen(self) -> None:
        old = self.gallery
        try:
            self.gallery = self.open_store().open()
            self.error = ""
        except (GalleryError, OSError) as e:
            self.error = str(e)
            log.error(
                "gallery.unusable",
                error=str(e),
                dir=str(self.config.gallery.dir),
                hint="results are stored without candidates until a valid gallery is installed "
                "(edgeface gallery sync / inspect)",
            )
            self.gallery = None
        if old is not None and old is not self.gallery:
            old.close()
        if self.gallery is None and not self.error:
            log.warning(
                "gallery.none_installed",
                dir=str(self.config.gallery.dir),
                hint="faces are compared with nobody until a gallery is synced (gallery.sync_url)",
            )
        elif self.gallery is not None:
            log.info("gallery.in_use", version=self.gallery.version, count=len(self.gallery))

    @property
    def version(self) -> int | None:
        g = self.gallery
        return g.version if g is not None else None

    def close(self) -> None:
        if self.gallery is not None:
            self.gallery.close()
            self.gallery = None
