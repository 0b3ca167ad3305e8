"""The gallery: enrollment, signed bundles, search, sync to devices and encryption at rest.

Central side: :func:`~edgeface.gallery.enroll.enroll` images with provenance into a workspace,
:func:`~edgeface.gallery.publish.publish` a signed version (and deltas) into a folder that
:mod:`~edgeface.gallery.serve` serves over HTTP.

Device side: a :class:`~edgeface.gallery.store.GalleryStore` holds installed versions (encrypted with
the device key), :func:`~edgeface.gallery.sync.sync_once` / :class:`~edgeface.gallery.sync.Syncer`
fetch and switch atomically, and :meth:`GalleryStore.open` gives a :class:`Gallery` to search::

    gallery = store.open()
    decision = gallery.identify(embedding, top_k=5)   # Decision(match or None, candidates, threshold)

See docs/gallery.md for the bundle format, trust checks and what encryption at rest protects against.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers and editors; at run time the names load on first use
    from .match import Candidate as Candidate
    from .match import Decision as Decision
    from .match import Gallery as Gallery
    from .store import GalleryStore as GalleryStore

# Importing a settings module (``edgeface.gallery.settings``, which the configuration loads for every
# command) must not pull in the whole package, so the names below load when first used (PEP 562).
_EXPORTS = {"Candidate": "match", "Decision": "match", "Gallery": "match", "GalleryStore": "store"}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Candidate", "Decision", "Gallery", "GalleryStore"]
