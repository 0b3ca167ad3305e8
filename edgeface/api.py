"""The library surface: a handful of verbs over numpy arrays, the whole chain from image to identity.

Each verb uses a default :class:`~edgeface.vision.engine.Engine` for the calling thread, created on
first use with the built-in configuration (models load then, not at import). Pass ``engine=`` to use
your own, configured one (``Engine(config)``; its configuration also says where the installed gallery is).

======================================  ===============================================================
``load_image(path_or_bytes)``           HxWx3 uint8 RGB array, EXIF-upright; ImageError if unreadable
``detect_faces(image)``                 list of :class:`Face` (box, 6 keypoints, score, rotation), best first
``assess_quality(image, face)``         :class:`Quality` with ``passed`` and the reasons for a refusal
``align(image, face)``                  the embedder's aligned chip, HxWx3 uint8 RGB (150x150 by default)
``embed(chip)`` / ``embed(image, face)`` L2-normalised embedding, (D,) (128 by default); (N, D) for N
``open_gallery(bundle_dir=None)``       a verified :class:`Gallery` (the installed one by default)
``identify(image, gallery=...)``        list of :class:`Identification`: per face, quality, candidates
                                        with scores and the decision (match or none), best face first
======================================  ===============================================================
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from .vision.engine import Engine
from .vision.faces import Face
from .vision.imageio import ImageSource
from .vision.quality import Quality

if TYPE_CHECKING:
    from .gallery.match import Candidate, Decision, Gallery

#: What ``identify`` and ``open_gallery`` accept as a gallery: an opened one, or a bundle folder.
GallerySource = Union["Gallery", str, "os.PathLike[str]"]

_local = threading.local()


def default_engine() -> Engine:
    """This thread's default engine (TFLite interpreters must not be shared between threads)."""
    engine = getattr(_local, "engine", None)
    if engine is None:
        engine = _local.engine = Engine()
    return engine


def load_image(source: ImageSource, *, engine: Engine | None = None) -> np.ndarray:
    """Read an image file, bytes or binary file object as an HxWx3 uint8 RGB array.

    The EXIF orientation is applied; greyscale, RGBA and 16-bit images are converted. Raises
    :class:`~edgeface.errors.ImageError` (or ``ImageTooLarge``) with the reason for bad input.
    """
    return (engine or default_engine()).load_image(source)


def detect_faces(image: np.ndarray, *, engine: Engine | None = None) -> list[Face]:
    """Faces in an RGB image at any in-plane rotation, highest score first.

    Each :class:`Face` has ``box`` (x0, y0, x1, y1), ``keypoints`` (6x2: right eye, left eye, nose
    tip, mouth, right ear tragion, left ear tragion, as the subject sees them), ``score`` and
    ``rotation`` (degrees the image was turned to find it), all in ``image``'s pixels.
    """
    return (engine or default_engine()).detect(image)


def assess_quality(image: np.ndarray, face: Face, *, engine: Engine | None = None) -> Quality:
    """Detection score, face size, sharpness and pose for ``face``, checked against the limits.

    ``Quality.passed`` is False when any limit fails; ``Quality.reasons`` says which and by how much.
    """
    return (engine or default_engine()).assess(image, face)


def align(image: np.ndarray, face: Face, *, engine: Engine | None = None) -> np.ndarray:
    """The aligned face chip the embedder expects (size and template from its model card)."""
    return (engine or default_engine()).align(image, face)


def embed(
    image_or_chip: np.ndarray, face: Face | Sequence[Face] | None = None, *, engine: Engine | None = None
) -> np.ndarray:
    """The L2-normalised embedding of a face, float32, as the daemon computes it (flip fusion as the
    embedder's card or ``embed.flip_fusion`` says).

    - ``embed(chip)``: ``chip`` is an aligned chip from :func:`align` (HxWx3 uint8); returns (D,).
      A batch of chips (N, H, W, 3) gives (N, D).
    - ``embed(image, face)``: aligns ``face`` in ``image`` first; returns (D,).
    - ``embed(image, faces)``: every face of a list, aligned and embedded as one batch; returns (N, D).

    D is the embedder card's dimension (128 for the default dlib ResNet). Compare two embeddings with
    their dot product (cosine similarity). Raises ValueError for an input that is not a chip of the
    embedder's size when no face is given.
    """
    engine = engine or default_engine()
    if face is None:
        return engine.embed(np.asarray(image_or_chip))
    if isinstance(face, Face):
        return engine.embed(engine.align(image_or_chip, face))
    faces = list(face)
    if not faces:
        spec = engine.embedder_card.embedder
        assert spec is not None
        return np.zeros((0, spec.dim), dtype=np.float32)
    return np.atleast_2d(engine.embed(np.stack([engine.align(image_or_chip, f) for f in faces])))


def open_gallery(
    bundle_dir: str | os.PathLike[str] | None = None,
    *,
    trusted_keys: Sequence[str | os.PathLike[str]] | None = None,
    engine: Engine | None = None,
) -> Gallery:
    """A verified gallery to search, ready for :func:`identify` (close it with ``.close()`` when done).

    ``bundle_dir=None`` opens the gallery installed on this unit (``gallery.dir`` of the engine's
    configuration, decrypted with the device key), as ``edgeface run`` does; a folder opens a published
    bundle there, checked against ``trusted_keys`` (public key files; default ``gallery.trusted_keys``).
    Either way the signature, every file's SHA-256 and the embedder are checked before use; a failed
    check raises :class:`~edgeface.errors.BundleRejected`, no installed gallery
    :class:`~edgeface.errors.GalleryError`.
    """
    from .daemon.gallery_holder import GalleryHolder
    from .errors import GalleryError
    from .gallery.match import Gallery
    from .gallery.signing import load_trusted
    from .gallery.store import unit_embedder

    engine = engine or default_engine()
    cfg = engine.config
    if bundle_dir is None:
        opened = GalleryHolder(cfg).open_store().open()  # the store the daemon's match stage opens
        if opened is None:
            raise GalleryError(
                f"no gallery is installed in {cfg.gallery.dir}; install one with `edgeface gallery "
                "sync`, or pass a bundle folder"
            )
        return opened
    keys = cfg.gallery.trusted_keys if trusted_keys is None else [Path(k) for k in trusted_keys]
    g = cfg.gallery
    return Gallery.open(
        Path(bundle_dir),
        load_trusted(keys),
        embedder=unit_embedder(engine.embedder_card),
        exact_max=g.exact_max,
        search_k=g.search_k,
        top_k=g.top_k,
        threshold=g.threshold,
        normalised_threshold=g.normalised_threshold,  # as the daemon's store opens it (GalleryStore.from_config)
    )


@dataclass(frozen=True)
class Identification:
    """One face found by :func:`identify` and who it may be. A match is a lead for a person to confirm."""

    face: Face
    quality: Quality
    embedding: np.ndarray | None  # (D,); None when the quality gate refused the face
    decision: Decision | None  # the candidates and the match; None when refused (not compared)

    @property
    def match(self) -> Candidate | None:
        """The best candidate if it reached the gallery's threshold, else None ("no match" or refused)."""
        return self.decision.match if self.decision is not None else None

    @property
    def candidates(self) -> list[Candidate]:
        """The best distinct identities with their cosine similarities, best first (empty when refused)."""
        return self.decision.candidates if self.decision is not None else []

    @property
    def verdict(self) -> str:
        """``"match"``, ``"no_match"`` or ``"refused"``: the words of the unit's results (``decision`` there)."""
        if self.decision is None:
            return "refused"
        return "match" if self.decision.match is not None else "no_match"

    def to_dict(self) -> dict[str, Any]:
        """Box, keypoints, score, rotation, ``quality``, ``verdict`` and ``decision`` (match, threshold,
        candidates; None when refused), as ``edgeface identify --json`` prints each face."""
        return {
            **self.face.to_dict(),
            "quality": self.quality.to_dict(),
            "verdict": self.verdict,
            "decision": self.decision.to_dict() if self.decision is not None else None,
        }


def identify(
    image: np.ndarray,
    *,
    gallery: GallerySource | None = None,
    trusted_keys: Sequence[str | os.PathLike[str]] | None = None,
    top_k: int | None = None,
    threshold: float | None = None,
    engine: Engine | None = None,
) -> list[Identification]:
    """Every face in ``image`` compared with a gallery: the daemon's steps for one frame, the same functions
    its stages call (:mod:`edgeface.daemon.steps`).

    Faces are detected and quality-checked; those that pass are aligned and embedded (one batch) and
    searched in the gallery (:meth:`Gallery.identify`). ``gallery`` is an opened gallery
    (:func:`open_gallery`; best for many images), a bundle folder, or None for the installed one; a
    gallery opened here is closed before returning. ``top_k`` and ``threshold`` (raw cosine) default to the
    gallery's (``gallery.top_k``, else 5; ``gallery.threshold``, else the bundle's rule: its normalised
    threshold or ``gallery.normalised_threshold`` where it carries normalisation, else its cosine one).

    Returns one :class:`Identification` per face, in :func:`detect_faces` order: ``face``,
    ``quality``, ``embedding`` (D,) and ``decision`` (``match``: the best candidate or None,
    ``candidates``: up to ``top_k`` identities with ``score``, ``threshold``), or ``embedding`` and
    ``decision`` None for a face the quality gate refused.
    """
    from .daemon.steps import perceive, search
    from .gallery.match import Gallery

    engine = engine or default_engine()
    opened = (
        gallery if isinstance(gallery, Gallery) else open_gallery(gallery, trusted_keys=trusted_keys, engine=engine)
    )
    try:
        return [
            Identification(d.face, d.quality, e, None if e is None else search(opened, e, top_k, threshold))
            for d, e in perceive(engine, image)
        ]
    finally:
        if opened is not gallery:
            opened.close()
