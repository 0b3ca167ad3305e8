"""BlazeFace detection on real photos, at every 90° rotation, with the keypoints mapped back."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from edgeface.errors import ModelError
from edgeface.vision.cards import find_card, load_card
from edgeface.vision.geometry import rotate_image, unrotate_box, unrotate_points, weighted_nms
from edgeface.vision.imageio import load_image
from edgeface.vision.models.blazeface import BlazeFaceDetector, ssd_anchors
from edgeface.vision.settings import DetectConfig, RuntimeConfig


def _centre_faces(faces, image):  # type: ignore[no-untyped-def]
    h, w = image.shape[:2]
    return [f for f in faces if f.box[0] <= w / 2 <= f.box[2] and f.box[1] <= h / 2 <= f.box[3]]


def test_upright_portrait(detector: BlazeFaceDetector, obama: np.ndarray) -> None:
    faces = detector.detect(obama)
    assert len(faces) == 1
    f = faces[0]
    assert f.rotation == 0 and f.score > 0.85
    # The face is in the upper-middle of this portrait, about a third of its width.
    assert 300 < f.box[0] < 400 and 550 < f.box[2] < 680 and 0.2 < f.width / obama.shape[1] < 0.4
    re, le, nose, mouth = (np.array(f.keypoint(n)) for n in ("right_eye", "left_eye", "nose_tip", "mouth"))
    assert re[0] < nose[0] < le[0], "subject's right eye is on the image's left"
    assert max(re[1], le[1]) < nose[1] < mouth[1], "eyes above nose above mouth"


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotated_portrait_found_and_mapped_back(detector: BlazeFaceDetector, obama: np.ndarray, degrees: int) -> None:
    upright = detector.detect(obama)[0]
    turned = rotate_image(obama, degrees)
    faces = detector.detect(turned)
    assert len(faces) == 1
    f = faces[0]
    assert (f.rotation + degrees) % 360 == 0, "the detector turned the image back upright"
    # Keypoints are in the turned image's pixels; turning them back gives the upright keypoints.
    h, w = obama.shape[:2]
    back = unrotate_points(f.keypoints, degrees, w, h)
    assert np.abs(back - upright.keypoints).max() < 4.0
    assert turned.shape[:2] == ((w, h) if degrees % 180 else (h, w))


def test_unrotate_points_inverts_rotate_image() -> None:
    img = np.zeros((30, 50, 3), np.uint8)
    img[7, 11] = 255  # pixel centre at (11.5, 7.5)
    for deg in (0, 90, 180, 270):
        turned = rotate_image(img, deg)
        y, x = np.argwhere(turned[:, :, 0] == 255)[0]
        back = unrotate_points(np.array([[x + 0.5, y + 0.5]], np.float32), deg, 50, 30)
        assert np.allclose(back, [[11.5, 7.5]])


def test_unrotate_box_gives_the_box_in_the_original_image() -> None:
    img = np.zeros((30, 50, 3), np.uint8)
    img[5:12, 20:31] = 255  # the box (20, 5, 31, 12) in pixel edges
    for deg in (0, 90, 180, 270):
        turned = rotate_image(img, deg)
        ys, xs = np.nonzero(turned[:, :, 0])
        box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
        assert np.allclose(unrotate_box(box, deg, 50, 30), (20, 5, 31, 12))


def test_lfw_recall_at_every_rotation(detector: BlazeFaceDetector, lfw_root: Path) -> None:
    """A sample of LFW at 0/90/180/270°: the centre face is found, the right way up (full set: bench)."""
    paths = sorted((lfw_root / "images").glob("*/*.jpg"))
    sample = random.Random(7).sample(paths, 60)
    for deg in (0, 90, 180, 270):
        found = oriented = 0
        for p in sample:
            image = rotate_image(load_image(p), deg)
            centre = _centre_faces(detector.detect(image), image)
            found += bool(centre)
            oriented += bool(centre) and (centre[0].rotation + deg) % 360 == 0
        assert found >= 59 and oriented >= 59, (deg, found, oriented)


def test_no_face_in_blank_or_noise(detector: BlazeFaceDetector) -> None:
    assert detector.detect(np.full((240, 320, 3), 128, np.uint8)) == []
    noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    assert detector.detect(noise) == []


def test_tiny_and_extreme_aspect_images(detector: BlazeFaceDetector) -> None:
    for shape in [(1, 1, 3), (2, 900, 3), (900, 3, 3)]:
        assert detector.detect(np.zeros(shape, np.uint8)) == []


def test_rejects_non_rgb_input(detector: BlazeFaceDetector) -> None:
    with pytest.raises(ValueError, match="uint8 RGB"):
        detector.detect(np.zeros((10, 10), np.uint8))


def test_several_faces(detector: BlazeFaceDetector, images_dir: Path) -> None:
    a = load_image(images_dir / "obama.jpg")
    b = load_image(images_dir / "biden.jpg")[: a.shape[0], : a.shape[1]]
    h = min(a.shape[0], b.shape[0])
    pair = np.concatenate([a[:h], b[:h]], axis=1)
    faces = detector.detect(pair)
    assert len(faces) == 2
    assert sorted(f.box[0] < a.shape[1] for f in faces) == [False, True]


def test_all_rotations_mode_finds_faces_in_two_orientations(images_dir: Path) -> None:
    """One person upright and one lying down in the same photo."""
    det = BlazeFaceDetector(find_card("blazeface-short-range"), RuntimeConfig(), DetectConfig(rotation_mode="all"))
    a = load_image(images_dir / "obama.jpg")
    b = rotate_image(load_image(images_dir / "biden.jpg")[:900, :900], 90)
    h = min(a.shape[0], b.shape[0])
    pair = np.concatenate([a[:h], b[:h]], axis=1)
    faces = det.detect(pair)
    assert sorted(f.rotation for f in faces) == [0, 270]


def test_full_range_model_from_its_card(obama: np.ndarray) -> None:
    det = BlazeFaceDetector(find_card("blazeface-full-range"), RuntimeConfig())
    assert len(det.anchors) == 2304
    faces = det.detect(obama)
    assert len(faces) == 1 and faces[0].score > 0.6


def test_anchor_counts_follow_the_cards() -> None:
    short = find_card("blazeface-short-range")
    assert short.detector is not None
    assert len(ssd_anchors(short.detector, 128, 128)) == 896


def test_weighted_nms_merges_overlaps() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    points = np.zeros((3, 1, 2), np.float32)
    points[1] = 2.0
    scores = np.array([0.9, 0.6, 0.8], np.float32)
    out = weighted_nms(boxes, points, scores, 0.3)
    assert len(out) == 2
    box, pts, score = out[0]
    assert score == pytest.approx(0.9)
    assert box[0] == pytest.approx(0.6 / 1.5) and pts[0, 0] == pytest.approx(2 * 0.6 / 1.5)


def test_card_that_does_not_match_the_model(tmp_path: Path) -> None:
    src = find_card("blazeface-short-range")
    text = src.path.read_text().replace("strides = [8, 16, 16, 16]", "strides = [8, 16]")
    (tmp_path / "face_detection_short_range.tflite").write_bytes(src.model_path.read_bytes())
    (tmp_path / "blazeface-short-range.toml").write_text(text)
    with pytest.raises(ModelError, match="anchor"):
        BlazeFaceDetector(load_card(tmp_path / "blazeface-short-range.toml"))


def test_corrupt_model_file_refused(tmp_path: Path) -> None:
    src = find_card("blazeface-short-range")
    data = bytearray(src.model_path.read_bytes())
    data[5000] ^= 0xFF
    (tmp_path / "face_detection_short_range.tflite").write_bytes(bytes(data))
    (tmp_path / "blazeface-short-range.toml").write_text(src.path.read_text())
    card = load_card(tmp_path / "blazeface-short-range.toml")
    with pytest.raises(ModelError, match="SHA-256"):
        BlazeFaceDetector(card)
