"""Reading images strictly: size limits before decoding, EXIF orientation, every mode to 8-bit RGB.

Truncated files are errors (edgeface never sets Pillow's LOAD_TRUNCATED_IMAGES), and the pixel limit
is checked from the header before the image data is decoded, so a decompression bomb costs nothing.
Every failure is an :class:`~edgeface.errors.ImageError` whose message names the file and the cause.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageError, ImageTooLarge
from ..logs import get_logger
from .settings import ImageConfig

log = get_logger(__name__)

ImageSource = Union[str, "os.PathLike[str]", bytes, BinaryIO]

#: Formats accepted. MPO is the multi-picture JPEG many phones write.
FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "BMP")


def _formats() -> list[str]:
    """The accepted formats this Pillow knows (MPO is its own plugin only in some versions)."""
    Image.init()  # registers every plugin once; later calls return at once
    return [f for f in FORMATS if f in Image.OPEN]


def _name(source: ImageSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return getattr(source, "name", "<bytes>") if not isinstance(source, bytes) else "<bytes>"


def _read_bytes(source: ImageSource, limits: ImageConfig) -> bytes:
    name = _name(source)
    if isinstance(source, bytes):
        data = source
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            size = path.stat().st_size
            if size > limits.max_bytes:
                raise ImageTooLarge(
                    f"{name}: file is {size} bytes, above image.max_bytes = {limits.max_bytes}; "
                    "raise the limit if this image is expected"
                )
            with path.open("rb") as f:
                data = f.read(limits.max_bytes + 1)
        except IsADirectoryError:
            raise ImageError(f"{name}: is a directory, not an image file") from None
        except FileNotFoundError:
            raise ImageError(f"{name}: no such file") from None
        except PermissionError:
            raise ImageError(f"{name}: permission denied") from None
        except OSError as e:
            raise ImageError(f"{name}: cannot be read ({e.strerror or e})") from e
    else:
        data = source.read(limits.max_bytes + 1)
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(f"{name}: more than image.max_bytes = {limits.max_bytes} bytes")
    if not data:
        raise ImageError(f"{name}: file is empty (0 bytes)")
    return data


def _reason(e: Exception) -> str:
    text = str(e) or type(e).__name__
    if "truncated" in text.lower():
        return "the file is truncated (incomplete download or copy?)"
    return f"{type(e).__name__}: {text}"


def _to_rgb(im: Image.Image) -> np.ndarray:
    """Any Pillow mode -> HxWx3 uint8 RGB. 16-bit and float greys are scaled, alpha goes on white."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or (mode == "I" and a.max(initial=0) > 255) else 255.0
        if mode == "F":
            top = max(1.0, float(a.max(initial=1.0))) if a.max(initial=0) > 1.0 else 1.0
        grey = np.clip(a * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        canvas.alpha_composite(rgba)
        im = canvas
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.ascontiguousarray(np.asarray(im, dtype=np.uint8))


def load_image(source: ImageSource, limits: ImageConfig | None = None) -> np.ndarray:
    """Read an image file (or bytes, or a binary file object) as an HxWx3 uint8 RGB array.

    JPEG, PNG, WebP and BMP; the EXIF orientation is applied so the array is upright as the camera
    saw it; greyscale, palette, RGBA, CMYK and 16-bit images are converted. Raises
    :class:`~edgeface.errors.ImageTooLarge` above ``limits.max_pixels`` or ``limits.max_bytes``
    (checked before decoding) and :class:`~edgeface.errors.ImageError` for anything unreadable.
    """
    limits = limits or ImageConfig()
    name = _name(source)
    data = _read_bytes(source, limits)
    try:
        im = Image.open(io.BytesIO(data), formats=_formats())
    except Image.DecompressionBombError as e:
        raise ImageTooLarge(
            f"{name}: refused before decoding, above image.max_pixels = {limits.max_pixels} ({e})"
        ) from e
    except UnidentifiedImageError:
        raise ImageError(
            f"{name}: not a supported image (accepted: JPEG, PNG, WebP, BMP); convert other formats "
            "such as HEIC or RAW to JPEG first"
        ) from None
    except Exception as e:  # noqa: BLE001 - Pillow raises many types on malformed headers
        raise ImageError(f"{name}: unreadable image header: {_reason(e)}") from e
    with im:
        width, height = im.size
        if width <= 0 or height <= 0:
            raise ImageError(f"{name}: image has no pixels ({width}x{height})")
        if width * height > limits.max_pixels:
            raise ImageTooLarge(
                f"{name}: {width}x{height} = {width * height} pixels, above image.max_pixels = "
                f"{limits.max_pixels}; refused before decoding. Raise the limit if this image is expected."
            )
        try:
            im.load()
        except Exception as e:  # noqa: BLE001 - decoder errors come as OSError, SyntaxError, ValueError...
            raise ImageError(f"{name}: cannot decode image: {_reason(e)}") from e
        try:
            ImageOps.exif_transpose(im, in_place=True)  # in place: no copy of an image that is upright already
        except Exception as e:  # noqa: BLE001 - a corrupt EXIF block must not lose the picture
            log.warning("image.exif_ignored", image=name, error=f"{type(e).__name__}: {e}")
        try:
            return _to_rgb(im)
        except Exception as e:  # noqa: BLE001
            raise ImageError(f"{name}: cannot convert {im.mode} image to RGB ({e})") from e


def save_image(path: str | Path, rgb: np.ndarray, quality: int = 95) -> None:
    """Write an RGB array (JPEG or PNG by extension)."""
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB").save(path, quality=quality)
