"""The library surface: a handful of verbs over numpy arrays.

Each verb uses a default :class:`~edgeface.vision.engine.Engine` for the calling thread, created on first
use with the built-in configuration (models load then, not at import). Pass ``engine=`` to use your
own, configured one.

=====================================  ==================================================================
``load_image(path_or_bytes)``          HxWx3 uint8 RGB array, EXIF-upright; ImageError if unreadable
``detect_faces(image)``                list of :class:`Face` (box, 6 keypoints, score, rotation), best first
``assess_quality(image, face)``        :class:`Quality` with ``passed`` and the reasons for a refusal
``align(image, face)``                 the embedder's aligned chip, HxWx3 uint8 RGB (150x150 by default)
=====================================  ==================================================================
"""

from __future__ import annotations

import threading

import numpy as np

from .vision.engine import Engine
from .vision.faces import Face
from .vision.imageio import ImageSource
from .vision.quality import Quality

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
