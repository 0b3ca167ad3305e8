"""Build, encode and check the JSON payloads of the MQTT contract (schema version 1).

Every payload is a JSON object with ``schema_version``; the schema files in ``edgeface/schemas/``
define the fields, and :func:`result_rules` adds the rules a schema cannot say (a "match" has a
candidate at or above the threshold, candidates are best first, ...). Encoding refuses anything
that breaks either, so a device never queues a payload the server would reject.
"""

from __future__ import annotations

import base64
import binascii
import io
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..errors import PayloadError
from ..outbox.uuid7 import new_id
from .timestamps import utc_timestamp
from .validate import schema_errors, text_problems

SCHEMA_VERSION = 1
CROP_HARD_LIMIT = 64 * 1024  # bytes of JPEG; the schema's base64 maxLength matches it
DECISIONS = ("match", "no_match", "refused")
QUALITY_KEYS = ("score", "size_px", "sharpness", "yaw", "pitch", "roll")


@dataclass(frozen=True)
class Candidate:
    """One gallery entry proposed for a face: a lead for a reviewer, with its score."""

    identity_id: str
    score: float
    display_name: str | None = None

    def as_dict(self) -> dict[str, Any]:
        # Cosine similarity of unit vectors; float32 rounding can step just outside [-1, 1].
        score = min(1.0, max(-1.0, round(float(self.score), 6)))
        out: dict[str, Any] = {"identity_id": self.identity_id, "score": score}
        if self.display_name:
            out["display_name"] = self.display_name
        return out


def _num(v: Any, nd: int = 3) -> float | None:
    if v is None:
        return None
    f = float(v)
    return None if math.isnan(f) else round(f, nd)


def result_payload(
    *,
    device_id: str,
    decision: str,
    candidates: Sequence[Candidate | Mapping[str, Any]],
    threshold: float | None,
    quality: Mapping[str, Any] | Any,
    gallery_version: int | None,
    model_id: str,
    captured_at: float | datetime | None = None,
    id: str | None = None,
    refusal_reasons: Sequence[str] = (),
    crop: Mapping[str, Any] | None = None,
    face_box: Sequence[float] | None = None,
    source: str | None = None,
    location: Mapping[str, Any] | None = None,
    case: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A result document (not yet checked; :func:`encode_result` checks and encodes it).

    ``quality`` is a mapping or an object with ``score, size_px, sharpness, yaw, pitch, roll``
    (e.g. :class:`edgeface.vision.quality.Quality`); NaN becomes null. ``crop`` comes from
    :func:`crop_payload`. ``location`` is ``{lat, lon[, accuracy_m][, source]}`` and ``case``
    ``{tag, source}`` (:mod:`edgeface.capture.place` and :mod:`edgeface.capture.tags` make them).
    A new UUIDv7 ``id`` is made unless one is given.
    """
    get = quality.get if isinstance(quality, Mapping) else lambda k: getattr(quality, k, None)
    q = {k: _num(get(k), 4 if k == "score" else 1) for k in QUALITY_KEYS}
    cands = [c.as_dict() if isinstance(c, Candidate) else dict(c) for c in candidates]
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "id": id or new_id(),
        "device_id": device_id,
        "captured_at": utc_timestamp(captured_at),
        "gallery_version": gallery_version,
        "model_id": model_id,
        "decision": decision,
        "threshold": None if threshold is None else float(threshold),
        "candidates": cands,
        "quality": q,
    }
    if refusal_reasons:
        doc["refusal_reasons"] = [str(r) for r in refusal_reasons]
    if face_box is not None:
        doc["face_box"] = [round(float(v), 1) for v in face_box]
    if source:
        doc["source"] = source
    if location is not None:
        doc["location"] = dict(location)
    if case is not None:
        doc["case"] = dict(case)
    if crop is not None:
        doc["crop"] = dict(crop)
    return doc


def result_rules(doc: Mapping[str, Any]) -> list[str]:
    """The contract's rules beyond the schema (call on a schema-valid result)."""
    problems = []
    decision, cands, thr = doc["decision"], doc["candidates"], doc["threshold"]
    key = "normalised" if doc.get("score_space") == "normalised" else "score"  # the score decided on
    if key == "normalised" and any("normalised" not in c for c in cands):
        return ["with score_space 'normalised' every candidate needs its 'normalised' score"]
    if key == "score" and thr is not None and not -1 <= thr <= 1:
        problems.append("a cosine threshold lies within -1..1")
    scores = [c[key] for c in cands]
    if any(a < b for a, b in itertools.pairwise(scores)):
        problems.append(f"candidates must be ordered best first ({key} descending)")
    if decision == "match":
        if thr is None or not cands or scores[0] < thr:
            problems.append("a 'match' needs a threshold and a first candidate scoring at or above it")
    elif decision == "no_match":
        if thr is None:
            problems.append("a 'no_match' needs the threshold it was decided with")
        elif cands and scores[0] >= thr:
            problems.append("a 'no_match' cannot have a candidate at or above the threshold")
    elif decision == "refused":
        if cands:
            problems.append("a 'refused' face was not compared, so it has no candidates")
        if not doc.get("refusal_reasons"):
            problems.append("a 'refused' result needs refusal_reasons")
    crop = doc.get("crop")
    if crop is not None:
        try:
            jpeg = base64.b64decode(crop["data"], validate=True)
        except (binascii.Error, ValueError):
            problems.append("crop.data is not valid base64")
        else:
            if not jpeg.startswith(b"\xff\xd8"):
                problems.append("crop.data is not a JPEG file")
    return problems


def check(doc: Any, name: str) -> None:
    """Raise :class:`PayloadError` unless ``doc`` follows schema ``name`` (and, for results, the rules)."""
    errors = schema_errors(doc, name)
    if errors:
        raise PayloadError(f"{name} payload does not follow {name}.v1.json: " + "; ".join(errors), "schema")
    text = text_problems(doc)
    if text:
        raise PayloadError(f"{name} payload has text that cannot be stored: " + "; ".join(text), "text")
    if name == "result":
        rules = result_rules(doc)
        if rules:
            raise PayloadError("result payload breaks the contract: " + "; ".join(rules), "rules")


def encode(doc: Mapping[str, Any], name: str, *, max_bytes: int | None = None) -> bytes:
    """Check ``doc`` against schema ``name`` and encode it as compact UTF-8 JSON."""
    check(doc, name)
    data = json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    if max_bytes is not None and len(data) > max_bytes:
        raise PayloadError(
            f"{name} payload {doc.get('id', '')} is {len(data)} bytes, over mqtt.max_payload_bytes = "
            f"{max_bytes}; lower mqtt.max_crop_bytes or turn mqtt.include_crop off.",
            "too_large",
        )
    return data


def encode_result(doc: Mapping[str, Any], *, max_bytes: int | None = None) -> bytes:
    """:func:`encode` for results."""
    return encode(doc, "result", max_bytes=max_bytes)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode(data: bytes | bytearray, name: str, *, max_bytes: int) -> dict[str, Any]:
    """Parse and check a received payload; :class:`PayloadError` (with ``kind``) says what is wrong.

    The size is checked before anything is parsed, the text must be strict UTF-8 JSON (no NaN or
    Infinity), and the document must follow schema ``name``.
    """
    if len(data) > max_bytes:
        raise PayloadError(f"payload of {len(data)} bytes is over the limit of {max_bytes}", "too_large")
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as e:
        raise PayloadError(f"payload is not UTF-8: {e}", "not_utf8") from None
    try:
        doc: Any = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        raise PayloadError(f"payload is not JSON: {str(e)[:200]}", "not_json") from None
    check(doc, name)
    checked: dict[str, Any] = doc  # check() refused anything that is not an object of the schema
    return checked


def crop_payload(rgb: Any, *, max_bytes: int, max_side: int = 160) -> dict[str, Any]:
    """A ``crop`` object from an RGB face image (HxWx3 uint8), as JPEG within ``max_bytes``.

    The image is shrunk to at most ``max_side`` pixels and JPEG quality lowered step by step until
    it fits; :class:`PayloadError` if even a small, low-quality JPEG does not.
    """
    from PIL import Image  # Pillow is a dependency; imported here so payload code stays light

    limit = min(int(max_bytes), CROP_HARD_LIMIT)
    img = Image.fromarray(rgb).convert("RGB")
    img.thumbnail((max_side, max_side))
    for side in (max_side, max_side // 2, max_side // 4):
        if max(img.size) > side:
            img.thumbnail((side, side))
        for quality in (85, 70, 55, 40, 30):
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=quality, optimize=True)
            if buf.tell() <= limit:
                return {
                    "format": "jpeg",
                    "width": img.width,
                    "height": img.height,
                    "data": base64.b64encode(buf.getvalue()).decode("ascii"),
                }
    raise PayloadError(
        f"face crop does not fit in {limit} bytes even at {img.size}; raise mqtt.max_crop_bytes", "too_large"
    )


def status_payload(
    *,
    device_id: str,
    state: str,
    reason: str,
    ts: float | None = None,
    uptime_s: float | None = None,
    software_version: str | None = None,
    gallery_version: int | None = None,
    model_id: str | None = None,
    outbox: Mapping[str, Any] | None = None,
    link: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A status document: ``state`` "online" (heartbeat) or "offline" (last will, goodbye)."""
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "device_id": device_id,
        "state": state,
        "ts": utc_timestamp(ts),
        "reason": reason,
    }
    if uptime_s is not None:
        doc["uptime_s"] = round(float(uptime_s), 3)
    if software_version is not None:
        doc["software_version"] = software_version
    if state == "online" or gallery_version is not None:
        doc["gallery_version"] = gallery_version
    if model_id:
        doc["model_id"] = model_id
    if outbox is not None:
        keys = (
            "pending",
            "bytes",
            "matches",
            "oldest_age_s",
            "quarantined",
            "dropped_overflow",
            "expired",
            "delivered",
        )
        doc["outbox"] = {k: outbox[k] for k in keys if k in outbox}
    if link is not None:
        doc["link"] = dict(link)
    return doc


def announce_payload(
    *,
    gallery_version: int,
    url: str,
    model_id: str,
    published_at: float | None = None,
    manifest_sha256: str | None = None,
    count: int | None = None,
) -> dict[str, Any]:
    """A gallery announcement (the central server publishes it retained)."""
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "gallery_version": gallery_version,
        "published_at": utc_timestamp(published_at),
        "url": url,
        "model_id": model_id,
    }
    if manifest_sha256 is not None:
        doc["manifest_sha256"] = manifest_sha256
    if count is not None:
        doc["count"] = count
    return doc


def command_payload(
    command: str,
    *,
    args: Mapping[str, Any] | None = None,
    issued_at: float | None = None,
    expires_at: float | None = None,
    id: str | None = None,
) -> dict[str, Any]:
    """A command to one device (the central server publishes it on the device's commands topic)."""
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "id": id or new_id(),
        "command": command,
        "issued_at": utc_timestamp(issued_at),
    }
    if expires_at is not None:
        doc["expires_at"] = utc_timestamp(expires_at)
    if args:
        doc["args"] = dict(args)
    return doc
