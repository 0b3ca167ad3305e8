"""The library's step-by-step verbs as a user imports them (`from edgeface import ...`): load_image,
detect_faces, assess_quality, align and default_engine, on the public-domain test photos; each agrees with
the embedding the daemon's chain computes. (tests/core/test_api.py covers open_gallery, identify, embed.)"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from edgeface import (
    Engine,
    Face,
    ImageError,
    Quality,
    align,
    assess_quality,
    default_engine,
    detect_faces,
    embed,
    load_image,
)


def test_the_verbs_from_a_file_to_a_chip(images_dir: Path) -> None:
    path = images_dir / "obama.jpg"
    image = load_image(path)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert np.array_equal(load_image(path.read_bytes()), image)  # bytes as well as paths
    faces = detect_faces(image)
    assert len(faces) == 1 and isinstance(faces[0], Face)
    face = faces[0]
    x0, y0, x1, y1 = face.box
    assert 0 <= x0 < x1 <= image.shape[1] and 0 <= y0 < y1 <= image.shape[0] and face.score > 0.5
    q = assess_quality(image, face)
    assert isinstance(q, Quality) and q.passed, q.reasons
    chip = align(image, face)
    spec = default_engine().alignment  # the embedder card's chip size
    assert chip.shape == (spec.height, spec.width, 3) and chip.dtype == np.uint8
    # the chip is the one embed(image, face) aligns itself
    assert float(embed(chip) @ embed(image, face)) == pytest.approx(1.0, abs=1e-5)


def test_a_blurred_face_is_refused_with_its_reason(images_dir: Path) -> None:
    import cv2

    image = cv2.GaussianBlur(load_image(images_dir / "obama.jpg"), (0, 0), 12)
    face = detect_faces(image)[0]
    q = assess_quality(image, face)
    assert not q.passed and any("sharpness" in r for r in q.reasons)


def test_unreadable_input_raises_image_error() -> None:
    with pytest.raises(ImageError):
        load_image(b"not an image")


def test_default_engine_is_one_per_thread_and_an_engine_can_be_passed() -> None:
    main = default_engine()
    assert isinstance(main, Engine) and default_engine() is main
    other: list[Engine] = []
    t = threading.Thread(target=lambda: other.append(default_engine()))
    t.start()
    t.join(60)
    assert other and other[0] is not main  # TFLite interpreters are not shared between threads
    blank = np.zeros((64, 64, 3), np.uint8)
    assert detect_faces(blank, engine=other[0]) == []
