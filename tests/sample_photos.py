"""The bundled sample photos, and a safe way to drop photos into a watched folder (daemon, capture tests)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from edgeface.daemon import demo

SAMPLE_PHOTOS = sorted(demo.PHOTOS.glob("*.jpg"))


def feed(inbox: Path, photos: list[Path], names: list[str] | None = None, mtime0: float | None = None) -> list[Path]:
    """Copy photos into the inbox the safe way (temporary name, then rename), with increasing mtimes."""
    out = []
    mtime0 = time.time() - 3600 if mtime0 is None else mtime0
    for i, src in enumerate(photos):
        name = names[i] if names else f"{i:03d}-{src.name}"
        tmp = inbox / f".{name}.part"
        shutil.copyfile(src, tmp)
        os.utime(tmp, (mtime0 + i, mtime0 + i))
        os.replace(tmp, inbox / name)
        out.append(inbox / name)
    return out
