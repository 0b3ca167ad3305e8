"""Aligned face chips for the review page: the probe's and each shown enrolled image's face, detected and
warped to the embedder's alignment template by the server's engine, so the faces being compared sit at
one size and one scale (enrolled images are whole portraits; the probe is the unit's loose crop).

Chips are kept in a small in-process cache by the image's SHA-256 and never written to disk: a chip is
derived personal data, and a crop removed by retention or an identity removed from the gallery must not
live on in a file.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from ..errors import ImageError

CACHE_ITEMS = 512  # about 30 KB a chip: ~15 MB at most

_cache: OrderedDict[str, bytes] = OrderedDict()
_cache_lock = threading.Lock()


def _png(chip: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(chip), cv2.COLOR_RGB2BGR))
    return buf.tobytes() if ok else b""


def aligned_chip(svc: Any, data: bytes) -> bytes:
    """The PNG of the largest face in the image ``data``, aligned as the units align; b'' when no face is
    found or the image cannot be read (the page then shows the image itself)."""
    key = hashlib.sha256(data).hexdigest()
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    with svc.engine_lock:
        engine = svc.engine()
        try:
            image = engine.load_image(data)
            faces = engine.detect(image)
        except (ImageError, OSError, ValueError):
            faces = []
        png = b""
        if faces:
            face = max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
            png = _png(engine.align(image, face))
    with _cache_lock:
        _cache[key] = png
        while len(_cache) > CACHE_ITEMS:
            _cache.popitem(last=False)
    return png
