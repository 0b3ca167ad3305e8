"""Quality gate (score, size, sharpness, pose) and similarity alignment on real photos."""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
import pytest

from edgeface.vision.align import align
from edgeface.vision.cards import AlignmentSpec
from edgeface.vision.faces import Face
from edgeface.vision.geometry import rotate_image, similarity_transform
from edgeface.vision.models.blazeface import BlazeFaceDetector
from edgeface.vision.quality import assess, estimate_pose, sharpness
from edgeface.vision.settings import QualityConfig

SPEC = AlignmentSpec(
    width=150,
    height=150,
    template={"right_eye": (55.0, 56.0), "left_eye": (95.0, 56.0), "nose_tip": (75.0, 85.0), "mouth": (75.0, 108.0)},
)


def test_sharp_portrait_passes(detector: BlazeFaceDetector, obama: np.ndarray) -> None:
    q = assess(obama, detector.detect(obama)[0])
    assert q.passed, q.reasons
    assert q.sharpness > 100 and q.size_px > 200 and abs(q.roll) < 10


def test_blur_is_refused_with_reason(detector: BlazeFaceDetector, obama: np.ndarray) -> None:
    blurred = cv2.GaussianBlur(obama, (0, 0), 12)
    faces = detector.detect(blurred)
    assert faces, "still detectable, just blurred"
    q = assess(blurred, faces[0])
    assert not q.passed
    assert [r.check for r in q.refusals] == ["sharpness"]
    assert "sharpness" in q.reasons[0] and "limit" in q.reasons[0]


def test_small_face_is_refused(detector: BlazeFaceDetector, obama: np.ndarray) -> None:
    small = cv2.resize(obama, None, fx=0.1, fy=0.1, interpolation=cv2.INTER_AREA)
    faces = detector.detect(small)
    assert faces
    q = assess(small, faces[0], QualityConfig(min_sharpness=0))
    assert "size" in [r.check for r in q.refusals]


def test_score_limit_from_config(detector: BlazeFaceDetector, obama: np.ndarray) -> None:
    q = assess(obama, detector.detect(obama)[0], QualityConfig(min_score=0.99))
    assert [r.check for r in q.refusals] == ["score"]


def test_yaw_sign_flips_with_a_mirror(detector: BlazeFaceDetector, images_dir) -> None:  # type: ignore[no-untyped-def]
    from edgeface.vision.imageio import load_image

    img = load_image(images_dir / "obama3.jpg")  # head clearly turned
    yaw = assess(img, detector.detect(img)[0]).yaw
    mirrored = np.ascontiguousarray(img[:, ::-1])
    yaw_m = assess(mirrored, detector.detect(mirrored)[0]).yaw
    assert abs(yaw) > 10
    assert yaw_m == pytest.approx(-yaw, abs=8)


def test_roll_follows_in_plane_rotation(detector: BlazeFaceDetector, obama: np.ndarray) -> None:
    h, w = obama.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), -25, 1.0)  # OpenCV: positive = counter-clockwise
    turned = cv2.warpAffine(obama, m, (w, h))
    base = assess(obama, detector.detect(obama)[0]).roll
    roll = assess(turned, detector.detect(turned)[0]).roll
    assert roll - base == pytest.approx(25, abs=5)


def test_profile_limit(detector: BlazeFaceDetector, images_dir) -> None:  # type: ignore[no-untyped-def]
    from edgeface.vision.imageio import load_image

    img = load_image(images_dir / "obama3.jpg")
    q = assess(img, detector.detect(img)[0], QualityConfig(max_yaw=10))
    assert "yaw" in [r.check for r in q.refusals]


def test_yaw_limit_holds_for_a_head_turned_either_way(detector: BlazeFaceDetector, images_dir) -> None:  # type: ignore[no-untyped-def]
    """The limit is on |yaw|: obama3 turned one way (+17 deg) and mirrored (-21 deg) are both refused at 10."""
    from edgeface.vision.imageio import load_image

    img = load_image(images_dir / "obama3.jpg")
    mirrored = np.ascontiguousarray(img[:, ::-1])
    limits = QualityConfig(max_yaw=10, min_sharpness=0)
    for image, sign in ((img, 1), (mirrored, -1)):
        q = assess(image, detector.detect(image)[0], limits)
        assert q.yaw * sign > 10, q.yaw
        assert [(r.check, r.value) for r in q.refusals] == [("yaw", abs(q.yaw))]
    assert assess(mirrored, detector.detect(mirrored)[0], QualityConfig(max_yaw=30)).passed


def test_pitch_limit_refuses_a_lowered_head_and_passes_a_level_one(
    detector: BlazeFaceDetector,
    images_dir,
    obama: np.ndarray,  # type: ignore[no-untyped-def]
) -> None:
    """biden.jpg looks slightly down (pitch about -7.5 deg), obama.jpg level (about -1 deg)."""
    from edgeface.vision.imageio import load_image

    biden = load_image(images_dir / "biden.jpg")
    limits = QualityConfig(max_pitch=4, max_yaw=90, min_sharpness=0)
    q = assess(biden, detector.detect(biden)[0], limits)
    assert q.pitch < -4, q.pitch
    assert [(r.check, r.value) for r in q.refusals] == [("pitch", abs(q.pitch))]
    assert "pitch" in q.reasons[0]
    level = assess(obama, detector.detect(obama)[0], limits)
    assert abs(level.pitch) < 4 and level.passed, level.reasons
    assert assess(biden, detector.detect(biden)[0], QualityConfig(max_pitch=20, max_yaw=90, min_sharpness=0)).passed


def test_similarity_transform_recovers_known_transform() -> None:
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 200, (6, 2))
    angle, scale, t = 0.7, 1.8, np.array([12.0, -30.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = (scale * rot @ src.T).T + t
    m = similarity_transform(src, dst)
    assert np.allclose(m[:, :2], scale * rot) and np.allclose(m[:, 2], t)


def test_similarity_transform_never_reflects() -> None:
    src = np.array([[0, 0], [10, 0], [0, 10]], float)
    dst = src * [-1, 1]  # a mirror image
    m = similarity_transform(src, dst)
    assert np.linalg.det(m[:, :2]) > 0


def test_aligned_chip_puts_keypoints_on_template(detector: BlazeFaceDetector, obama: np.ndarray) -> None:
    face = detector.detect(obama)[0]
    chip = align(obama, face, SPEC)
    assert chip.shape == (150, 150, 3) and chip.dtype == np.uint8
    # the chip itself re-detected: eyes where the template put them (within a few pixels)
    canvas = np.zeros((300, 300, 3), np.uint8)
    canvas[75:225, 75:225] = chip
    again = detector.detect(canvas)[0]
    for name in ("right_eye", "left_eye"):
        x, y = again.keypoint(name)
        tx, ty = SPEC.template[name]
        assert abs(x - 75 - tx) < 6 and abs(y - 75 - ty) < 6


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotation_is_undone_by_alignment(detector: BlazeFaceDetector, obama: np.ndarray, degrees: int) -> None:
    upright = align(obama, detector.detect(obama)[0], SPEC).astype(int)
    turned = rotate_image(obama, degrees)
    chip = align(turned, detector.detect(turned)[0], SPEC).astype(int)
    assert np.abs(chip - upright).mean() < 8  # same face, same way up (small keypoint jitter only)


def test_limits_are_inclusive_and_each_refusal_carries_its_value_and_limit(
    detector: BlazeFaceDetector, obama: np.ndarray
) -> None:
    """A measurement equal to its limit passes; one just past it is refused, the refusal saying the value
    measured and the limit it broke (what `Quality.reasons` shows an operator)."""
    face = detector.detect(obama)[0]
    q = assess(obama, face)
    at = QualityConfig(
        min_score=face.score,
        min_face_px=q.size_px,  # type: ignore[arg-type]  # a float limit, to land exactly on the measurement
        min_sharpness=q.sharpness,
        max_yaw=abs(q.yaw),
        max_pitch=abs(q.pitch),
    )
    assert assess(obama, face, at).passed
    eps = 1e-6
    past = QualityConfig(
        min_score=face.score + eps,
        min_face_px=q.size_px + eps,  # type: ignore[arg-type]
        min_sharpness=q.sharpness + eps,
        max_yaw=abs(q.yaw) - eps,
        max_pitch=abs(q.pitch) - eps,
    )
    got = [(r.check, r.value, r.limit) for r in assess(obama, face, past).refusals]
    assert got == [
        ("score", face.score, face.score + eps),
        ("size", q.size_px, q.size_px + eps),
        ("sharpness", q.sharpness, q.sharpness + eps),
        ("yaw", abs(q.yaw), abs(q.yaw) - eps),
        ("pitch", abs(q.pitch), abs(q.pitch) - eps),
    ]


def _keep(face: Face, names: tuple[str, ...]) -> Face:
    """The same face as a detector that gives only ``names`` would report it."""
    idx = [face.keypoint_names.index(n) for n in names]
    return dataclasses.replace(face, keypoints=face.keypoints[idx], keypoint_names=names)


_CORE = ("right_eye", "left_eye", "nose_tip", "mouth")


def test_yaw_from_the_eyes_when_the_detector_gives_no_ears(detector: BlazeFaceDetector, images_dir) -> None:  # type: ignore[no-untyped-def]
    """Without both ear keypoints yaw comes from the nose between the eyes: close to the ear-based figure
    (obama3 +17 deg, mirrored -21 deg), with the same sign; one ear alone is not enough for the ear formula."""
    from edgeface.vision.imageio import load_image

    img = load_image(images_dir / "obama3.jpg")
    for image, sign in ((img, 1), (np.ascontiguousarray(img[:, ::-1]), -1)):
        face = detector.detect(image)[0]
        full = estimate_pose(face)
        assert full.yaw * sign == pytest.approx(19, abs=3.5), full.yaw  # +17 and -21: a rough estimate
        eyes = estimate_pose(_keep(face, _CORE))
        assert eyes.yaw * sign > 10 and eyes.yaw == pytest.approx(full.yaw, abs=4), (eyes.yaw, full.yaw)
        assert (eyes.pitch, eyes.roll) == (full.pitch, full.roll)  # ears only ever change yaw
        for ear in ("right_ear_tragion", "left_ear_tragion"):
            assert estimate_pose(_keep(face, (*_CORE, ear))).yaw == eyes.yaw
        q = assess(image, _keep(face, _CORE), QualityConfig(max_yaw=10, min_sharpness=0))
        assert [r.check for r in q.refusals] == ["yaw"]


def test_pose_ignores_where_the_face_is_its_size_and_the_turn_of_the_image(
    detector: BlazeFaceDetector, images_dir
) -> None:  # type: ignore[no-untyped-def]
    """Yaw and pitch are the head's, not the picture's: the same keypoints moved, shrunk (to a face a pixel
    wide) or turned in the image plane give the same yaw and pitch; turning them adds to the roll only."""
    from edgeface.vision.imageio import load_image

    for name in ("obama3.jpg", "biden.jpg"):
        img = load_image(images_dir / name)
        face = detector.detect(img)[0]
        base = estimate_pose(face)
        angle = math.radians(25)
        turn = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        variants = {
            "moved": face.keypoints + np.array([300.0, -40.0]),
            "tiny": face.keypoints * 0.002,
            "turned": (face.keypoints - 200.0) @ turn.T + 200.0,  # 25 deg clockwise in image coordinates
        }
        for what, kp in variants.items():
            pose = estimate_pose(dataclasses.replace(face, keypoints=kp))
            assert pose.yaw == pytest.approx(base.yaw, abs=1e-3), what
            assert pose.pitch == pytest.approx(base.pitch, abs=1e-3), what
            turned_by = 25 if what == "turned" else 0
            assert pose.roll == pytest.approx(base.roll + turned_by, abs=1e-3), what


def test_a_face_without_the_pose_keypoints_has_no_pose_and_no_pose_refusal(
    detector: BlazeFaceDetector, obama: np.ndarray
) -> None:
    """A detector without nose or mouth keypoints cannot say the pose: NaN (shown as null), not a guess,
    and no yaw or pitch refusal, however tight the limits."""
    face = _keep(detector.detect(obama)[0], ("right_eye", "left_eye"))
    pose = estimate_pose(face)
    assert all(math.isnan(v) for v in (pose.yaw, pose.pitch, pose.roll))
    q = assess(obama, face, QualityConfig(max_yaw=0, max_pitch=0))
    assert q.passed, q.reasons
    d = q.to_dict()
    assert (d["yaw"], d["pitch"], d["roll"]) == (None, None, None) and d["passed"] is True


def test_ears_at_one_point_give_a_frontal_yaw_not_nan(detector: BlazeFaceDetector, obama: np.ndarray) -> None:
    """Degenerate ear keypoints (both on one point, as a detector may give for a tiny face) mean "cannot
    tell yaw from the ears": yaw 0, not NaN or a division by zero that lets the yaw check pass silently."""
    face = detector.detect(obama)[0]
    kp = face.keypoints.copy()
    kp[face.keypoint_names.index("left_ear_tragion")] = kp[face.keypoint_names.index("right_ear_tragion")]
    assert estimate_pose(dataclasses.replace(face, keypoints=kp)).yaw == 0.0


def _sketch(**points: tuple[float, float]) -> Face:
    """A face drawn by hand: keypoints in pixels (x right, y down), no ears unless given."""
    names = tuple(points)
    return Face((0.0, 0.0, 200.0, 200.0), np.array([points[n] for n in names], np.float32), names, 0.9, 0)


def test_pose_of_extreme_keypoints_is_clamped_to_a_quarter_turn_not_an_error() -> None:
    """A nose beyond an eye (a full profile) is yaw +-90, a nose below the mouth or above the eyes pitch
    +-90: the estimate saturates instead of failing on a keypoint a detector put oddly. A mouth on the eye
    line gives no pitch (NaN), so no pitch refusal; a face under a pixel wide has the same pose as its
    full-size self (only the proportions count)."""
    eyes = {"right_eye": (80.0, 80.0), "left_eye": (120.0, 80.0)}
    assert estimate_pose(_sketch(**eyes, nose_tip=(200.0, 100.0), mouth=(100.0, 120.0))).yaw == pytest.approx(90)
    assert estimate_pose(_sketch(**eyes, nose_tip=(0.0, 100.0), mouth=(100.0, 120.0))).yaw == pytest.approx(-90)
    assert estimate_pose(_sketch(**eyes, nose_tip=(100.0, 160.0), mouth=(100.0, 120.0))).pitch == pytest.approx(-90)
    assert estimate_pose(_sketch(**eyes, nose_tip=(100.0, 20.0), mouth=(100.0, 120.0))).pitch == pytest.approx(90)
    flat = _sketch(**eyes, nose_tip=(100.0, 100.0), mouth=(100.0, 80.0))
    assert math.isnan(estimate_pose(flat).pitch)
    image = np.zeros((200, 200, 3), np.uint8)
    assert "pitch" not in [r.check for r in assess(image, flat, QualityConfig(max_pitch=0)).refusals]
    leaning = _sketch(**eyes, nose_tip=(108.0, 104.0), mouth=(101.0, 126.0))
    tiny = dataclasses.replace(leaning, keypoints=leaning.keypoints * 0.01)  # eyes 0.4 px apart
    a, b = estimate_pose(leaning), estimate_pose(tiny)
    assert a.yaw > 5 and (b.yaw, b.pitch, b.roll) == pytest.approx((a.yaw, a.pitch, a.roll), abs=1e-3)


def test_reasons_and_the_json_form_of_a_quality(detector: BlazeFaceDetector, images_dir) -> None:  # type: ignore[no-untyped-def]
    """What the reviewer and the results' JSON show: each reason names the check, the value and the limit
    ("<" for a minimum not reached, ">" for a pose beyond its maximum); to_dict rounds for display."""
    from edgeface.vision.imageio import load_image

    image = load_image(images_dir / "biden.jpg")  # pitch about -7.6, yaw about 3
    face = detector.detect(image)[0]
    limits = QualityConfig(min_score=0.999, min_face_px=10_000, min_sharpness=1e9, max_yaw=1, max_pitch=4)
    q = assess(image, face, limits)
    assert [r.check for r in q.refusals] == ["score", "size", "sharpness", "yaw", "pitch"]
    assert q.reasons == [
        f"score {face.score:.3g} < limit 0.999",
        f"size {q.size_px:.3g} < limit 1e+04",
        f"sharpness {q.sharpness:.3g} < limit 1e+09",
        f"yaw {abs(q.yaw):.3g} > limit 1",
        f"pitch {abs(q.pitch):.3g} > limit 4",
    ]
    assert q.to_dict() == {
        "passed": False,
        "reasons": q.reasons,
        "score": round(face.score, 4),
        "size_px": round(q.size_px, 1),
        "sharpness": round(q.sharpness, 1),
        "yaw": round(q.yaw, 1),
        "pitch": round(q.pitch, 1),
        "roll": round(q.roll, 1),
    }
    assert all(v != round(v, 1) for v in (q.yaw, q.pitch, q.roll, q.sharpness))  # so the rounding shows
    assert face.score != round(face.score, 4) and round(face.score, 5) != round(face.score, 4)


def test_sharpness_measures_only_the_pixels_of_the_box_inside_the_image(obama: np.ndarray) -> None:
    """A box that runs off the image (a face at its edge) is measured on the part inside, exactly as the
    same pixels framed by a box inside a larger canvas; a box under 4 pixels wide or tall measures 0."""
    h, w = obama.shape[:2]
    pad = 40
    canvas = np.zeros((h + 2 * pad, w + 2 * pad, 3), np.uint8)
    canvas[pad : pad + h, pad : pad + w] = obama
    x0, y0, x1, y1 = 100.0, 60.0, 300.0, 280.0  # any box inside the photo

    def box(face_box: tuple[float, float, float, float]) -> Face:
        return Face(face_box, np.zeros((0, 2), np.float32), (), 0.9, 0)

    inside = sharpness(canvas, box((pad, pad + y0, pad + x1, pad + y1)))  # from the photo's left edge
    assert sharpness(obama, box((-30.0, y0, x1, y1))) == inside > 0
    top = sharpness(canvas, box((pad + x0, pad, pad + x1, pad + y1)))
    assert sharpness(obama, box((x0, -25.0, x1, y1))) == top > 0
    right = sharpness(canvas, box((pad + x0, pad + y0, pad + w, pad + h)))
    assert sharpness(obama, box((x0, y0, w + 30.0, h + 30.0))) == right > 0
    assert sharpness(obama, box((x0, y0, x0 + 3, y1))) == 0.0 and sharpness(obama, box((x0, y0, x1, y0 + 3))) == 0.0
    assert sharpness(obama, box((x0, y0, x0 + 4, y1))) > 0 and sharpness(obama, box((x0, y0, x1, y0 + 4))) > 0


@pytest.mark.parametrize(
    "face_box, value",
    [
        ((100.0, 60.0, 300.0, 280.0), 14.283140986664344),  # wider than SHARPNESS_WIDTH: shrunk (area)
        ((150.0, 100.0, 210.0, 170.0), 1.9877171659993176),  # narrower: enlarged (linear)
        ((150.0, 100.0, 156.0, 300.0), 0.7743508667350891),  # a sliver, enlarged far
        ((100.0, 300.0, 300.0, 304.0), 12.121806242028061),  # a strip, shrunk to the 4-row minimum
    ],
)
def test_sharpness_figures_are_stable(
    obama: np.ndarray, face_box: tuple[float, float, float, float], value: float
) -> None:
    """quality.min_sharpness is a number operators set against this measure (and the benchmarks report it):
    the variance of the Laplacian of the grey box rescaled to 112 pixels wide. A change to how it is
    computed (colour conversion, interpolation, rescaling, depth) moves every configured limit, so the
    figures of fixed boxes of a fixed photo are pinned; change them only with a note on the limits."""
    face = Face(face_box, np.zeros((0, 2), np.float32), (), 0.9, 0)
    assert sharpness(obama, face) == pytest.approx(value, rel=1e-6)
