"""Test photos for case and place: a real face beside a QR code (cv2.QRCodeEncoder), a photo with GPS
EXIF tags (Pillow), an EAN-13 barcode drawn from its specification. Written to temporary folders by the
tests; LFW faces are read from the shared folder and never copied into the repository."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

GPS_IFD = 0x8825


def _face_rgb(face: Path) -> np.ndarray:
    with Image.open(face) as img:
        return np.asarray(img.convert("RGB"))


def qr_image(text: str, module_px: int = 4) -> np.ndarray:
    """A QR code of ``text`` as an RGB image with its quiet zone, ``module_px`` pixels per module."""
    code = cv2.QRCodeEncoder.create().encode(text)  # 1 px per module, quiet zone included, 0/255
    big = cv2.resize(code, (code.shape[1] * module_px, code.shape[0] * module_px), interpolation=cv2.INTER_NEAREST)
    return np.repeat(big[..., None], 3, axis=2)


_EAN_L = ("0001101", "0011001", "0010011", "0111101", "0100011", "0110001", "0101111", "0111011", "0110111", "0001011")
_EAN_G = ("0100111", "0110011", "0011011", "0100001", "0011101", "0111001", "0000101", "0010001", "0001001", "0010111")
_EAN_R = ("1110010", "1100110", "1101100", "1000010", "1011100", "1001110", "1010000", "1000100", "1001000", "1110100")
_EAN_FIRST = ("LLLLLL", "LLGLGG", "LLGGLG", "LLGGGL", "LGLLGG", "LGGLLG", "LGGGLL", "LGLGLG", "LGLGGL", "LGGLGL")


def ean13_image(digits12: str, module_px: int = 2, height: int = 60) -> tuple[np.ndarray, str]:
    """An EAN-13 barcode of ``digits12`` plus its check digit (GS1 General Specifications 5.2.1.2), as an
    RGB image with quiet zones; returns (image, the 13 digits)."""
    d = [int(c) for c in digits12]
    check = (10 - sum(v * (3 if i % 2 else 1) for i, v in enumerate(d)) % 10) % 10
    code = digits12 + str(check)
    bits = "101"
    for i, c in enumerate(code[1:7]):
        bits += (_EAN_L if _EAN_FIRST[int(code[0])][i] == "L" else _EAN_G)[int(c)]
    bits += "01010"
    bits += "".join(_EAN_R[int(c)] for c in code[7:])
    bits += "101"
    row = np.array([0 if b == "1" else 255 for b in "0" * 11 + bits + "0" * 11], np.uint8)
    img = np.repeat(np.repeat(row[None, :], height, axis=0), module_px, axis=1)
    return np.repeat(img[..., None], 3, axis=2), code


def beside(face: Path, panel: np.ndarray, out: Path, *, gap: int = 20) -> Path:
    """A JPEG of the face photo with ``panel`` (a code) beside it on a white background."""
    rgb = _face_rgb(face)
    h = max(rgb.shape[0], panel.shape[0] + 2 * gap)
    canvas = np.full((h, rgb.shape[1] + panel.shape[1] + 2 * gap, 3), 255, np.uint8)
    canvas[: rgb.shape[0], : rgb.shape[1]] = rgb
    x, y = rgb.shape[1] + gap, (h - panel.shape[0]) // 2
    canvas[y : y + panel.shape[0], x : x + panel.shape[1]] = panel
    Image.fromarray(canvas).save(out, "JPEG", quality=92)
    return out


def _dms(value: float) -> tuple[IFDRational, IFDRational, IFDRational]:
    value = abs(value)
    d = int(value)
    m = int((value - d) * 60)
    s = (value - d - m / 60) * 3600
    return IFDRational(d, 1), IFDRational(m, 1), IFDRational(round(s * 10000), 10000)


def with_gps(src: Path, out: Path, lat: float, lon: float, accuracy_m: float | None = None) -> Path:
    """A copy of ``src`` as a JPEG whose EXIF holds GPSLatitude/GPSLongitude (and GPSHPositioningError)."""
    with Image.open(src) as img:
        exif = Image.Exif()
        gps: dict[int, object] = {
            0: b"\x02\x03\x00\x00",
            1: "S" if lat < 0 else "N",
            2: _dms(lat),
            3: "W" if lon < 0 else "E",
            4: _dms(lon),
        }
        if accuracy_m is not None:
            gps[31] = IFDRational(round(accuracy_m * 100), 100)
        exif[GPS_IFD] = gps
        img.convert("RGB").save(out, "JPEG", quality=92, exif=exif)
    return out
