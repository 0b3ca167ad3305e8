"""Property-based fuzzing of image decoding: any bytes give an array or an ImageError, never a crash."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from edgeface.errors import ImageError
from edgeface.vision.imageio import load_image
from edgeface.vision.settings import ImageConfig

LIMITS = ImageConfig(max_pixels=4_000_000)


def _seeds() -> list[bytes]:
    im = Image.new("RGB", (40, 30), (120, 60, 30))
    out = []
    for fmt in ("JPEG", "PNG", "WEBP", "BMP"):
        buf = io.BytesIO()
        im.save(buf, fmt)
        out.append(buf.getvalue())
    return out


SEEDS = _seeds()


def _check(data: bytes) -> None:
    try:
        arr = load_image(data, LIMITS)
    except ImageError:
        return
    assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_random_bytes(data: bytes) -> None:
    _check(data)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # refused by our own check
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.sampled_from(SEEDS),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=12),
    cut=st.one_of(st.none(), st.integers(1, 10_000)),
)
def test_mutated_valid_images(seed: bytes, edits: list[tuple[int, int]], cut: int | None) -> None:
    """Flipped bytes and truncation in real JPEG/PNG/WebP/BMP headers and data."""
    data = bytearray(seed)
    for pos, value in edits:
        data[pos % len(data)] = value
    if cut is not None:
        data = data[: cut % len(data) or 1]
    _check(bytes(data))


def test_seeds_are_valid() -> None:
    """The fuzzer starts from images that do decode (otherwise it would only test the error path)."""
    for s in SEEDS:
        assert load_image(s, LIMITS).shape == (30, 40, 3)


def test_real_photo_mutations(images_dir: Path) -> None:
    data = (images_dir / "obama.jpg").read_bytes()[:20000]
    for i in range(0, 2000, 97):
        mutated = bytearray(data)
        mutated[i] ^= 0xFF
        _check(bytes(mutated))
