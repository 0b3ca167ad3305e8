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

from .match import Candidate, Decision, Gallery
from .store import GalleryStore

__all__ = ["Candidate", "Decision", "Gallery", "GalleryStore"]
