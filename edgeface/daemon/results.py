"""From an emitted track to a result payload: decision, candidates, quality, crop, and a stable id.

The id is a UUIDv7 whose time is the capture time and whose other bits come from a hash of the
device, the frame's key and the face's position. Processing the same file again (after a kill -9
between storing its result and recording the file as done) therefore makes the same id, which the
outbox stores once and the server deduplicates: the guarantee "never twice" holds end to end.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from ..capture.context import case_of, location_of
from ..mqtt import payloads
from .dedup import Track
from .fusion import single
from .work import Observation

if TYPE_CHECKING:
    from ..gallery.match import Decision

CROP_MARGIN = 0.25  # extra box size on each side kept around a face crop
CROP_MAX_SIDE = 320


def result_id(device_id: str, obs: Observation) -> str:
    """Deterministic UUIDv7 for (device, frame, face): see the module docstring."""
    seed = hashlib.sha256(f"{device_id}\0{obs.source}\0{obs.job.frame.key}\0{obs.index}".encode()).digest()
    ms = max(0, int(obs.captured_at * 1000)) & ((1 << 48) - 1)
    rand_a = int.from_bytes(seed[:2], "big") & 0xFFF
    rand_b = int.from_bytes(seed[2:10], "big") & ((1 << 62) - 1)
    return str(uuid.UUID(int=ms << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b))


def face_crop(image: np.ndarray, box: tuple[float, float, float, float], max_side: int = CROP_MAX_SIDE) -> np.ndarray:
    """The face with a margin, shrunk to at most ``max_side`` pixels (a copy: the frame can be freed)."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = box
    mx, my = (x1 - x0) * CROP_MARGIN, (y1 - y0) * CROP_MARGIN
    a, b = max(0, int(x0 - mx)), max(0, int(y0 - my))
    c, d = min(w, math.ceil(x1 + mx)), min(h, math.ceil(y1 + my))
    crop = image[b:d, a:c] if c > a and d > b else image[0:1, 0:1]
    scale = max_side / max(crop.shape[:2])
    if scale < 1:
        crop = cv2.resize(
            crop,
            (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))),
            interpolation=cv2.INTER_AREA,
        )
    return np.ascontiguousarray(crop)


def _floor6(v: float) -> float:
    return math.floor(v * 1e6) / 1e6


def _ceil6(v: float) -> float:
    return math.ceil(v * 1e6) / 1e6


def source_label(obs: Observation) -> str:
    """The result's 'source': the file's path inside the watched folder, else the source's name."""
    rel = obs.job.frame.meta.get("rel")
    return str(rel) if rel else obs.source


def build_result(
    track: Track, *, device_id: str, model_id: str, include_crop: bool, max_crop_bytes: int, id: str | None = None
) -> dict[str, Any]:
    """The result document for ``track``, ready for :func:`enqueue_result`: the match of its fused faces
    (``track.final``; the best capture's own until the pipeline made it), the best capture's quality,
    box and crop, its case and place (:mod:`edgeface.capture.context`), and ``frames_fused``."""
    obs = track.best
    final = track.final or single(obs)
    decision_obj = final.decision
    candidates: list[dict[str, Any]] = []
    refusal: list[str] = []
    space = "cosine"
    if obs.embedding is None:
        decision, threshold = "refused", None
        refusal = obs.quality.reasons or ["refused by the quality gate"]
    elif decision_obj is None:  # no gallery installed: compared with nobody
        decision, threshold = "no_match", final.threshold
    else:
        threshold, space = float(decision_obj.threshold), decision_obj.space
        decision = "match" if decision_obj.match is not None else "no_match"
        candidates = _candidates(decision_obj, decision == "match")
    crop = None
    if include_crop and obs.crop is not None:
        crop = payloads.crop_payload(obs.crop, max_bytes=max_crop_bytes)
    doc = payloads.result_payload(
        id=id or result_id(device_id, obs),
        device_id=device_id,
        decision=decision,
        candidates=candidates,
        threshold=threshold,
        quality=obs.quality,
        gallery_version=final.gallery_version,
        model_id=model_id,
        captured_at=obs.captured_at,
        refusal_reasons=refusal,
        crop=crop,
        face_box=obs.face.box,
        source=source_label(obs),
        location=loc.as_dict() if (loc := location_of(obs.job.frame)) is not None else None,
        case=tag.as_dict() if (tag := case_of(obs.job.frame)) is not None else None,
    )
    doc["frames_fused"] = final.frames
    if space != "cosine":
        doc["score_space"] = space
    return doc


def _candidates(decision: Decision, matched: bool) -> list[dict[str, Any]]:
    """The candidates as the payload carries them: raw cosine ``score`` always, ``normalised`` where the
    gallery has it. Scores travel with 6 decimals; the one the decision was made on is rounded so the
    contract's rule (a match at or above the threshold, a no-match below it) still holds after rounding."""
    out = []
    for i, c in enumerate(decision.candidates):
        decided = c.decided_on(decision.space)
        v = _ceil6(decided) if (matched and i == 0) else _floor6(decided)
        if not matched and v >= decision.threshold:
            v = _floor6(math.nextafter(decision.threshold, -math.inf))
        raw, norm = (v, c.normalised) if decision.space == "cosine" else (round(c.score, 6), v)
        d = payloads.Candidate(c.identity, raw, c.name if c.name and c.name != c.identity else None).as_dict()
        if norm is not None:
            d["normalised"] = round(norm, 6) if decision.space == "cosine" else norm
        out.append(d)
    return out
