"""Image input: every format and mode accepted, every kind of bad input refused with a clear error."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeface.errors import ImageError, ImageTooLarge
from edgeface.vision.imageio import load_image
from edgeface.vision.settings import ImageConfig


def _encode(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def rgb(images_dir: Path) -> Image.Image:
    return Image.open(images_dir / "obama.jpg").convert("RGB").resize((91, 114))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP"])
def test_formats_decode_to_rgb_uint8(rgb: Image.Image, fmt: str) -> None:
    arr = load_image(_encode(rgb, fmt))
    assert arr.shape == (114, 91, 3) and arr.dtype == np.uint8
    ref = np.asarray(rgb)
    if fmt in ("PNG", "BMP"):
        assert np.array_equal(arr, ref)
    else:  # lossy: close, not equal
        assert np.abs(arr.astype(int) - ref).mean() < 8


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "1"])
def test_modes_converted(rgb: Image.Image, mode: str) -> None:
    if mode == "I;16":
        grey = np.asarray(rgb.convert("L"), dtype=np.uint16) * 257
        im = Image.fromarray(grey)
        assert im.mode.startswith("I;16")
    else:
        im = rgb.convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    arr = load_image(_encode(im, fmt))
    assert arr.shape == (114, 91, 3) and arr.dtype == np.uint8
    if mode in ("I;16", "L"):
        # 16-bit grey is scaled to 8 bits, not clipped: the picture stays the same
        assert np.abs(arr[:, :, 0].astype(int) - np.asarray(rgb.convert("L"), dtype=int)).max() <= 1


@pytest.mark.parametrize("mode,scale", [("I", 257), ("F", 1 / 255)])
def test_wide_grey_modes_scaled(rgb: Image.Image, mode: str, scale: float) -> None:
    """32-bit integer and float greys (no file format here writes them; decoders can produce them)."""
    from edgeface.vision.imageio import _to_rgb

    grey = np.asarray(rgb.convert("L"), dtype=np.float64)
    im = Image.fromarray((grey * scale).astype(np.int32 if mode == "I" else np.float32))
    assert im.mode == mode
    arr = _to_rgb(im)
    assert np.abs(arr[:, :, 1].astype(int) - grey).max() <= 1


def test_transparent_pixels_go_on_white(rgb: Image.Image) -> None:
    im = rgb.convert("RGBA")
    a = np.asarray(im).copy()
    a[:10, :10, 3] = 0
    arr = load_image(_encode(Image.fromarray(a, "RGBA"), "PNG"))
    assert (arr[:10, :10] == 255).all()


def test_exif_orientation_applied(rgb: Image.Image) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view": stored sideways, shown upright
    arr = load_image(_encode(rgb, "JPEG", exif=exif))
    assert arr.shape == (91, 114, 3)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_corrupt_exif_does_not_lose_the_picture(rgb: Image.Image) -> None:
    data = _encode(rgb, "JPEG", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff")
    assert load_image(data).shape == (114, 91, 3)


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        load_image(p)


def test_truncated_file(tmp_path: Path, images_dir: Path) -> None:
    data = (images_dir / "obama.jpg").read_bytes()
    p = tmp_path / "cut.jpg"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated"):
        load_image(p)


def test_not_an_image(tmp_path: Path) -> None:
    p = tmp_path / "notes.jpg"
    p.write_text("these are not the pixels you are looking for\n" * 20)
    with pytest.raises(ImageError, match="not a supported image"):
        load_image(p)


def test_unsupported_format_named(rgb: Image.Image) -> None:
    with pytest.raises(ImageError, match="HEIC"):
        load_image(_encode(rgb, "GIF"))


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="directory"):
        load_image(tmp_path)


@pytest.mark.parametrize("side", [8000, 20000])
def test_decompression_bomb_refused_before_decoding(side: int) -> None:
    """A one-colour PNG is tiny on disk and huge decoded (20000^2 = 1.2 GB RGB): refused from its header."""
    data = _encode(Image.new("1", (side, side), 0), "PNG")
    assert len(data) < 200_000
    with pytest.raises(ImageTooLarge, match="max_pixels"):
        load_image(data, ImageConfig(max_pixels=50_000_000))


def test_pixel_limit_is_configurable(rgb: Image.Image) -> None:
    data = _encode(rgb, "PNG")
    with pytest.raises(ImageTooLarge):
        load_image(data, ImageConfig(max_pixels=91 * 114 - 1))
    assert load_image(data, ImageConfig(max_pixels=91 * 114)).shape == (114, 91, 3)


def test_byte_limit(tmp_path: Path, rgb: Image.Image) -> None:
    p = tmp_path / "a.png"
    p.write_bytes(_encode(rgb, "PNG"))
    with pytest.raises(ImageTooLarge, match="max_bytes"):
        load_image(p, ImageConfig(max_bytes=os.path.getsize(p) - 1))


def test_real_lfw_image(lfw_root: Path) -> None:
    arr = load_image(lfw_root / "images" / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg")
    assert arr.shape == (250, 250, 3)
