"""Face detection with MediaPipe BlazeFace models, at any in-plane rotation.

Anchors, thresholds, keypoint names and tensor names come from the detector's model card. Field
photos are often sideways or upside down (a person lying down, a phone held sideways): the image is
turned by multiples of 90° when nothing is found upright, and every box and keypoint is mapped back
to the original image, so alignment sees the face's true orientation. The BlazeFace-specific part is
here (SSD anchors, box decoding, the upright check); the NMS and the rotations are in
:mod:`~edgeface.vision.geometry`.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ...errors import ModelError
from ..cards import DetectorSpec, ModelCard
from ..faces import Face
from ..geometry import iou, rotate_image, unrotate_box, unrotate_points, weighted_nms
from ..runtime import TFLiteModel
from ..settings import DetectConfig, RuntimeConfig

__all__ = ["BlazeFaceDetector", "ssd_anchors"]


def ssd_anchors(spec: DetectorSpec, width: int, height: int) -> np.ndarray:
    """Anchor centres (N, 2), normalised, generated as MediaPipe's SsdAnchorsCalculator does.

    Consecutive layers with the same stride share a feature map; each layer adds one anchor per cell,
    plus one more when interpolated_scale_aspect_ratio > 0 (all anchors have a fixed size of 1).
    """
    centres = []
    strides = list(spec.strides)
    i = 0
    while i < len(strides):
        per_cell = 0
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            per_cell += 2 if spec.interpolated_scale_aspect_ratio > 0 else 1
            j += 1
        rows = int(np.ceil(height / strides[i]))
        cols = int(np.ceil(width / strides[i]))
        ys, xs = np.mgrid[0:rows, 0:cols]
        cx = (xs + spec.anchor_offset[0]) / cols
        cy = (ys + spec.anchor_offset[1]) / rows
        grid = np.stack([cx, cy], axis=-1).reshape(-1, 1, 2)
        centres.append(np.repeat(grid, per_cell, axis=1).reshape(-1, 2))
        i = j
    return np.concatenate(centres).astype(np.float32)


class BlazeFaceDetector:
    """Runs a BlazeFace model described by its card. Owns its interpreter (one per thread)."""

    def __init__(
        self,
        card: ModelCard,
        runtime: RuntimeConfig | None = None,
        cfg: DetectConfig | None = None,
        *,
        verify: bool = True,
    ) -> None:
        if card.detector is None:
            raise ModelError(f"model {card.id} is a {card.task}, not a detector")
        self.card = card
        self.spec = card.detector
        self.cfg = cfg or DetectConfig()
        for r in self.cfg.rotations:
            if r % 90:
                raise ModelError(f"detect.rotations: {r} is not a multiple of 90")
        self.model = TFLiteModel(card.read_model(verify), runtime, name=card.id)
        self._reg = self.model.output_index(self.spec.regressors)
        self._cls = self.model.output_index(self.spec.scores)
        self.anchors = ssd_anchors(self.spec, card.input.width, card.input.height)
        n_out = self.model.outputs[self._reg].shape[1]
        if n_out != len(self.anchors):
            raise ModelError(
                f"model {card.id}: {len(self.anchors)} anchors from the card's strides, but the model "
                f"outputs {n_out} boxes; the card's [detector] anchor settings are wrong"
            )
        self.min_score = self.cfg.min_score if self.cfg.min_score is not None else self.spec.min_score
        # a little below the threshold's logit: the exact test is on the sigmoid, as before
        p = min(max(self.min_score, 1e-12), 1 - 1e-12)
        self._min_logit = math.log(p / (1 - p)) - 1e-6
        self.nms_iou = self.cfg.nms_iou if self.cfg.nms_iou is not None else self.spec.nms_iou
        self.confident_score = (
            self.cfg.confident_score if self.cfg.confident_score is not None else self.spec.confident_score
        )
        names = self.spec.keypoints
        self._eyes = (
            (names.index("right_eye"), names.index("left_eye"))
            if "right_eye" in names and "left_eye" in names
            else None
        )

    # -- one orientation ---------------------------------------------------------------------------

    def _prepare(self, image: np.ndarray) -> tuple[np.ndarray, float, float, float]:
        """Letterbox into the model's square input. Returns tensor, side, pad_x, pad_y (pixels)."""
        inp = self.card.input
        h, w = image.shape[:2]
        side = float(max(h, w))
        scale = inp.width / side
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        ox, oy = (inp.width - nw) // 2, (inp.height - nh) // 2
        canvas = np.zeros((inp.height, inp.width, 3), dtype=np.uint8)
        canvas[oy : oy + nh, ox : ox + nw] = cv2.resize(image, (nw, nh), interpolation=interp)
        if inp.colour == "BGR":
            canvas = canvas[:, :, ::-1]
        # pixel * scale + offset, computed once into the float tensor (no intermediate float copies)
        tensor = np.multiply(canvas, np.float32(inp.scale), dtype=np.float32)[None]
        if inp.offset:
            tensor += np.float32(inp.offset)
        # account for rounding of the resized size in the padding actually used
        return tensor, side, ox / scale, oy / scale

    def detect_upright(self, image: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """Faces in ``image`` as it is: list of (box[4], keypoints[K,2], score) in its pixels."""
        tensor, side, pad_x, pad_y = self._prepare(image)
        outputs = self.model.run(tensor)
        raw = outputs[self._reg][0]
        logits = np.clip(outputs[self._cls][0, :, 0], -self.spec.raw_score_clip, self.spec.raw_score_clip)
        keep = np.flatnonzero(logits >= self._min_logit)  # the sigmoid only for the few that pass
        if keep.size == 0:
            return []
        scores = 1.0 / (1.0 + np.exp(-logits[keep].astype(np.float64)))
        keep = keep[scores >= self.min_score]
        scores = scores[scores >= self.min_score]
        if keep.size == 0:
            return []
        k = len(self.spec.keypoints)
        reg = raw[keep].reshape(-1, 2 + k, 2) / self.spec.box_scale
        anchors = self.anchors[keep]
        centre = reg[:, 0] + anchors
        half = reg[:, 1] / 2
        boxes = np.concatenate([centre - half, centre + half], axis=1)
        points = reg[:, 2:] + anchors[:, None, :]
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        merged = weighted_nms(boxes[valid], points[valid], scores[valid], self.nms_iou)
        out = []
        offset = np.array([pad_x, pad_y], dtype=np.float32)
        for box, pts, score in merged:
            b = box.reshape(2, 2) * side - offset
            p = pts * side - offset
            out.append((b.reshape(4).astype(np.float32), p.astype(np.float32), score))
        return out

    # -- any orientation ---------------------------------------------------------------------------

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an HxWx3 uint8 RGB image, highest score first, in that image's pixels."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"detect wants an HxWx3 uint8 RGB image, got {image.dtype} {image.shape}")
        h, w = image.shape[:2]
        found: list[Face] = []
        for rotation in self.cfg.rotations:
            for box, pts, score in self.detect_upright(rotate_image(image, rotation)):
                if not self._upright(pts):
                    continue
                found.append(
                    Face(
                        box=unrotate_box(box, rotation, w, h),
                        keypoints=unrotate_points(pts, rotation, w, h),
                        keypoint_names=self.spec.keypoints,
                        score=score,
                        rotation=rotation,
                    )
                )
            if self.cfg.rotation_mode == "fallback" and any(f.score >= self.confident_score for f in found):
                break
        found = _dedupe_across_rotations(found, self.nms_iou)
        return found[: self.cfg.max_faces]

    def _upright(self, pts: np.ndarray) -> bool:
        """Whether keypoints found in this orientation describe a face turned less than 45°.

        BlazeFace is trained on roughly upright faces. On a face turned 90° it may still fire, with
        keypoints that betray the turn (the eye line near vertical); that face is found properly in
        another orientation, so such detections are dropped here.
        """
        if self._eyes is None:
            return True
        dx, dy = pts[self._eyes[1]] - pts[self._eyes[0]]
        return bool(dx > 0 and abs(dy) <= dx)


def _dedupe_across_rotations(faces: list[Face], iou_limit: float) -> list[Face]:
    """Keep the best-scoring face where detections from different rotations overlap."""
    faces = sorted(faces, key=lambda f: -f.score)
    boxes = np.array([f.box for f in faces], dtype=np.float32)
    keep: list[int] = []
    for i in range(len(faces)):
        if keep and np.any(iou(boxes[i], boxes[keep]) > iou_limit):
            continue
        keep.append(i)
    return [faces[i] for i in keep]
