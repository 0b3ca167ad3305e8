"""Changing a unit's embedder: the model and its gallery change together, in one swap, or not at all.

A new embedder is a new embedding space: a gallery built with one model is meaningless to another. So a
unit never runs a model against a gallery built with another one, and it keeps answering with the pair it
has (old model, old gallery) until the pair it is told to run (new model, new gallery) is complete.

How a unit knows both models:

* ``models.embedder`` is the model the unit is **told** to run (the *desired* one; a package or firmware
  update brings its card and sets it).
* The installed gallery's signed manifest names the model it was built with (id and SHA-256): that is
  the model the unit **runs** (the *active* one), as long as its card and file are still in the models
  folder (``models.dir``). An update must keep the previous card until the switch is done; both dlib
  cards ship with edgeface.

When they differ, a switch is pending. The gallery for the desired model is synced into its own store,
``<gallery.dir>/next/<embedder-id>/`` (the same trusted keys and device key; verified like any gallery),
from ``<gallery.sync_url>/<embedder-id>/`` (see sync.py). Once that store holds a verified gallery at
least as new as the installed one, the switch is **ready**; it is **done** when the unit next opens its
models (:func:`open_pair`: the daemon drains and restarts for it): one atomic rename of the
``current`` symlink onto the new gallery, before any model is loaded, after which the gallery names the
desired model and the unit loads it. A crash before that rename leaves the old pair; after it, the new
one. Nothing else changes which model runs.

Layout while a switch is pending and after it::

    current -> versions/v0000000012           the old pair's gallery (embedder A)
    next/B/current -> versions/v0000000012     the new gallery (embedder B), verified, waiting
    ... after the swap:
    current -> next/B/versions/v0000000012     (the next installed version moves it back to versions/)
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import EdgefaceError
from ..logs import get_logger
from ..vision.cards import ModelCard, find_card, list_cards
from .bundle import MANIFEST, SIGNATURE, read_signed_manifest
from .manifest import Manifest

if TYPE_CHECKING:
    from ..config import Config
    from .store import GalleryStore

log = get_logger(__name__)

NEXT = "next"
CURRENT = "current"
STATE = "sync-state.json"


@dataclass(frozen=True)
class Pair:
    """The model a unit runs now and the model it is told to run (the same card when no switch is pending)."""

    active: ModelCard  # the model to load: the installed gallery's, or the desired one
    desired: ModelCard  # models.embedder
    installed: Manifest | None  # the installed gallery's signed manifest (None: none, or unusable)

    @property
    def switching(self) -> bool:
        """A gallery for another model than the one running is wanted."""
        return self.active.sha256 != self.desired.sha256 or (
            self.installed is not None and self.installed.embedder.sha256 != self.desired.sha256
        )

    def config(self, config: Config) -> Config:
        """``config`` with ``models.embedder`` set to the active model: what everything that loads the model
        or opens the gallery in this process is given."""
        if config.models.embedder == self.active.id:
            return config
        return dataclasses.replace(config, models=dataclasses.replace(config.models, embedder=self.active.id))


def next_dir(gallery_dir: Path, embedder_id: str) -> Path:
    """Where the gallery for ``embedder_id`` is synced while a switch to it is pending."""
    return Path(gallery_dir) / NEXT / embedder_id


def _current(root: Path) -> Path | None:
    link = root / CURRENT
    if not link.is_symlink():
        return None
    target = (root / os.readlink(link)).resolve()
    return target if target.is_dir() else None


def _manifest(directory: Path | None, config: Config) -> Manifest | None:
    """The signed manifest in ``directory`` (None when there is none, or it does not verify: unusable)."""
    if directory is None:
        return None
    from .signing import load_trusted

    try:
        sig = directory / SIGNATURE
        return read_signed_manifest(
            (directory / MANIFEST).read_bytes(),
            sig.read_bytes() if sig.exists() else None,
            load_trusted(config.gallery.trusted_keys),
            str(directory),
        )
    except (EdgefaceError, OSError) as e:
        log.warning("gallery.switch.unreadable", dir=str(directory), error=str(e))
        return None


def _card_for(manifest: Manifest, config: Config) -> ModelCard | None:
    """The local embedder card of the model file the manifest names (by SHA-256; the same id preferred)."""
    try:
        cards = [c for c in list_cards(config.models.dir) if c.task == "embedder"]
    except EdgefaceError as e:
        log.warning("gallery.switch.cards_unreadable", error=str(e))
        return None
    same = [c for c in cards if c.sha256 == manifest.embedder.sha256]
    same.sort(key=lambda c: c.id != manifest.embedder.id)
    return same[0] if same else None


def choose(config: Config) -> Pair:
    """Which model this unit runs now (see the module docstring). Reads files only; changes nothing."""
    desired = find_card(config.models.embedder, config.models.dir, task="embedder")
    installed = _manifest(_current(Path(config.gallery.dir)), config)
    if installed is None or installed.embedder.sha256 == desired.sha256:
        return Pair(desired, desired, installed)
    previous = _card_for(installed, config)
    if previous is None:
        log.error(
            "gallery.switch.previous_model_missing",
            installed=installed.embedder.id,
            installed_sha256=installed.embedder.sha256[:12],
            desired=desired.id,
            hint=f"the installed gallery was built with {installed.embedder.id}, whose card is no longer in the models "
            "folder: the unit cannot keep answering with it, and has no gallery until one for "
            f"{desired.id} is synced. Keep the previous model's card and file until the switch is done",
        )
        return Pair(desired, desired, installed)
    return Pair(previous, desired, installed)


def pending_store(config: Config, pair: Pair) -> GalleryStore:
    """The store the desired model's gallery is synced into while the switch is pending."""
    from .store import GalleryStore

    g = dataclasses.replace(config.gallery, dir=next_dir(config.gallery.dir, pair.desired.id))
    return GalleryStore.from_config(g, dataclasses.replace(config.models, embedder=pair.desired.id))


def ready(config: Config, pair: Pair) -> Manifest | None:
    """The desired model's gallery if it can replace the installed one now: verified for that model, and
    not older than the installed gallery (a switch never goes back to removed identities)."""
    if not pair.switching:
        return None
    root = next_dir(config.gallery.dir, pair.desired.id)
    m = _manifest(_current(root), config)
    if m is None or m.embedder.sha256 != pair.desired.sha256:
        return None
    if pair.installed is not None and m.gallery_version < pair.installed.gallery_version:
        return None
    return m


def _swap(root: Path, target: Path) -> None:
    """The switch itself: ``current`` renamed onto a link to ``target`` (atomic), the folder synced."""
    tmp = root / (CURRENT + ".tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(os.path.relpath(target, root))
    os.replace(tmp, root / CURRENT)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_pair(config: Config) -> Pair:
    """At start, before any model is loaded: complete a switch that is ready (one swap), tidy up, and say
    which pair to run. The daemon, ``edgeface.identify`` and the CLI all take the model from here."""
    pair = choose(config)
    m = ready(config, pair)
    root = Path(config.gallery.dir)
    if m is not None:
        new_dir = _current(next_dir(root, pair.desired.id))
        assert new_dir is not None
        _swap(root, new_dir)
        log.warning(
            "gallery.switch.done",
            previous=pair.active.id,
            embedder=pair.desired.id,
            version=m.gallery_version,
            previous_version=pair.installed.gallery_version if pair.installed else 0,
        )
        _adopt_state(root, next_dir(root, pair.desired.id))
        pair = Pair(pair.desired, pair.desired, m)
    tidy(root, pair)
    if pair.switching:
        log.warning(
            "gallery.switch.pending",
            running=pair.active.id,
            desired=pair.desired.id,
            installed_version=pair.installed.gallery_version if pair.installed else 0,
            hint=f"answering with {pair.active.id} and its gallery until a gallery for {pair.desired.id} is synced "
            f"from <gallery.sync_url>/{pair.desired.id}/",
        )
    return pair


def _adopt_state(root: Path, new_root: Path) -> None:
    """The new gallery's sync state (pointer expiry, ETag) becomes the unit's; the old downloads go."""
    import shutil

    src = new_root / STATE
    if src.exists():
        tmp = root / (STATE + ".tmp")
        tmp.write_bytes(src.read_bytes())
        tmp.replace(root / STATE)
    else:
        (root / STATE).unlink(missing_ok=True)
    staging = root / "staging"
    for d in staging.iterdir() if staging.is_dir() else []:
        shutil.rmtree(d, ignore_errors=True) if d.is_dir() else d.unlink(missing_ok=True)


def tidy(root: Path, pair: Pair) -> None:
    """Remove what no switch needs any more: old galleries beside ``current`` and ``next/`` stores of
    models other than the desired one (except the one ``current`` lives in)."""
    import shutil

    root = Path(root)
    cur = _current(root)
    versions = root / "versions"
    if cur is not None and versions.is_dir() and cur.parent != versions.resolve():
        for d in versions.iterdir():  # the old pair's gallery, once the new one is current
            shutil.rmtree(d, ignore_errors=True)
    nxt = root / NEXT
    for d in nxt.iterdir() if nxt.is_dir() else []:
        holds_current = cur is not None and d.resolve() in cur.parents
        if holds_current or (pair.switching and d.name == pair.desired.id):
            continue
        shutil.rmtree(d, ignore_errors=True)
        log.info("gallery.switch.removed", dir=str(d))


def switch_info(config: Config) -> dict[str, Any]:
    """For ``edgeface status``: the model running, the one wanted, and how fetching its gallery goes."""
    try:
        pair = choose(config)
    except EdgefaceError as e:
        return {"error": str(e)}
    out: dict[str, Any] = {"running": pair.active.id, "desired": pair.desired.id, "pending": pair.switching}
    if pair.switching:
        root = next_dir(config.gallery.dir, pair.desired.id)
        m = ready(config, pair)
        out["ready"] = m is not None
        try:
            last = json.loads((root / STATE).read_text()).get("last_result") or {}
        except (OSError, ValueError):
            last = {}
        out["last_sync"] = {k: last.get(k) for k in ("status", "reason", "message")} if last else None
    return out
