"""edgeface: offline face identification for field units.

The library surface is a handful of verbs over numpy arrays (see :mod:`edgeface.api`)::

    import edgeface
    image = edgeface.load_image("photo.jpg")          # HxWx3 uint8 RGB, EXIF-upright
    faces = edgeface.detect_faces(image)              # list[Face], any in-plane rotation
    chip = edgeface.align(image, faces[0])            # the embedder's aligned chip
    q = edgeface.assess_quality(image, faces[0])      # Quality(passed, reasons, ...)

Models load lazily, on first use, into an :class:`~edgeface.vision.engine.Engine` per thread; build your own
``Engine(config)`` to control its lifetime.
"""

__version__ = "0.1.0"

from .api import align, assess_quality, default_engine, detect_faces, load_image  # noqa: E402
from .errors import EdgefaceError, ImageError, ImageTooLarge, ModelError  # noqa: E402
from .vision.engine import Engine  # noqa: E402
from .vision.faces import Face  # noqa: E402
from .vision.quality import Quality  # noqa: E402

__all__ = [
    "Engine",
    "Face",
    "Quality",
    "EdgefaceError",
    "ImageError",
    "ImageTooLarge",
    "ModelError",
    "align",
    "assess_quality",
    "default_engine",
    "detect_faces",
    "load_image",
]
