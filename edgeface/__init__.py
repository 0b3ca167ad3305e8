"""edgeface: offline face identification for field units.

The library surface is a handful of verbs over numpy arrays (see :mod:`edgeface.api`)::

    import edgeface
    image = edgeface.load_image("photo.jpg")          # HxWx3 uint8 RGB, EXIF-upright
    faces = edgeface.detect_faces(image)              # list[Face], any in-plane rotation
    q = edgeface.assess_quality(image, faces[0])      # Quality(passed, reasons, ...)
    chip = edgeface.align(image, faces[0])            # the embedder's aligned chip
    vector = edgeface.embed(image, faces[0])          # (128,) L2-normalised; embed(chip) works too
    for who in edgeface.identify(image, gallery="bundle/", trusted_keys=["central.pub"]):
        print(who.face.box, who.match, who.candidates)  # per face: candidates with scores, decision

Models load lazily, on first use, into an :class:`~edgeface.vision.engine.Engine` per thread; build
your own ``Engine(config)`` to control its lifetime. The recognition chain itself is
:mod:`edgeface.vision` (a map of it is in its docstring).
"""

__version__ = "0.1.0"

from .api import (  # noqa: E402
    Identification,
    align,
    assess_quality,
    default_engine,
    detect_faces,
    embed,
    identify,
    load_image,
    open_gallery,
)
from .errors import EdgefaceError, GalleryError, ImageError, ImageTooLarge, ModelError  # noqa: E402
from .vision.engine import Engine  # noqa: E402
from .vision.faces import Face  # noqa: E402
from .vision.quality import Quality  # noqa: E402

__all__ = [
    "Engine",
    "Face",
    "Identification",
    "Quality",
    "EdgefaceError",
    "GalleryError",
    "ImageError",
    "ImageTooLarge",
    "ModelError",
    "align",
    "assess_quality",
    "default_engine",
    "detect_faces",
    "embed",
    "identify",
    "load_image",
    "open_gallery",
]
