"""The gallery the match stage searches, reopened there (one thread) after a sync installed a new one;
and the model it goes with: a change of model (gallery/switch.py) is fetched alongside and completed
when the unit next opens its models, never in a running process (:attr:`GalleryHolder.switch_ready`)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from ..errors import GalleryError
from ..logs import get_logger

if TYPE_CHECKING:
    from ..config import Config
    from ..gallery.match import Gallery
    from ..gallery.store import GalleryStore
    from ..gallery.switch import Pair
    from ..gallery.sync import SyncResult

log = get_logger(__name__)


def choose_pair(config: Config) -> tuple[Config, Pair]:
    """The model and gallery to run now, a switch that is ready completed first (before any model loads):
    ``config`` with ``models.embedder`` set to that model, and the pair (see gallery/switch.py)."""
    from ..gallery.switch import open_pair

    pair = open_pair(config)
    return pair.config(config), pair


class GalleryHolder:
    """The installed gallery (None: none usable); :meth:`current` reopens it once :attr:`changed` is set.

    ``config`` names the model this process runs (:func:`choose_pair`); ``pair``, when a change of model is
    pending, makes :meth:`pending_sync` fetch the new model's gallery, and :attr:`switch_ready` is set
    once it is verified: the daemon then drains and exits so that the next start switches both at once.
    """

    def __init__(self, config: Config, pair: Pair | None = None) -> None:
        self.config = config
        self.pair = pair
        self.store: GalleryStore | None = None
        self.gallery: Gallery | None = None
        self.changed = threading.Event()
        self.changed.set()  # open at first use
        self.switch_ready = threading.Event()
        self.error = ""

    def pending_sync(self) -> dict[str, Any]:
        """The Syncer's arguments for a pending change of model (``{}`` when none)."""
        if self.pair is None or not self.pair.switching:
            return {}
        from ..gallery.switch import pending_store

        return {
            "pending": pending_store(self.config, self.pair),
            "pending_embedder": self.pair.desired.id,
            "on_pending": self._on_pending,
        }

    def _on_pending(self, result: SyncResult) -> None:
        from ..gallery.switch import ready

        assert self.pair is not None
        m = ready(self.config, self.pair)
        if m is not None:
            if not self.switch_ready.is_set():
                log.warning(
                    "gallery.switch.ready",
                    running=self.pair.active.id,
                    desired=self.pair.desired.id,
                    version=m.gallery_version,
                    hint="the unit restarts to load the new model with its gallery (one swap at start)",
                )
            self.switch_ready.set()
        elif result.status in ("failed", "refused"):
            log.warning(
                "gallery.switch.waiting",
                running=self.pair.active.id,
                desired=self.pair.desired.id,
                reason=result.reason,
                error=result.message,
                hint=f"answering with {self.pair.active.id} and its gallery until a gallery for "
                f"{self.pair.desired.id} is verified",
            )

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
