"""Case and body tags: which case a photo belongs to, as the field team gives it.

A tag comes from the operator (``edgeface trigger --tag``, the MQTT ``capture`` command's
``args.tag``), from a QR code or barcode visible in the photo (body bags and evidence cards carry
them; OpenCV's detectors read them), or from the folder a photo was copied into
(``<capture.folder.path>/<case>/.../<photo>.jpg``). When several apply, the most specific wins:
what the operator said for this capture, then a code in the photo, then the folder.

Codes are read per inference thread (:class:`CodeReader` holds OpenCV detectors, which are not
shared between threads), on the decoded frame, before faces are detected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from ..logs import get_logger

if TYPE_CHECKING:
    import numpy as np

log = get_logger(__name__)

MAX_TAG = 128  # characters; the result schema's limit
SOURCES = ("trigger", "command", "qrcode", "barcode", "folder")  # most specific first
CODE_KINDS = ("qrcode", "barcode")
# Camera cards keep photos under DCIM/ (the DCF standard): a card copied whole into the folder is no case.
NOT_A_CASE = frozenset({"dcim"})
_CONTROL = re.compile("[\x00-\x1f\x7f]")
_SPACES = re.compile(r"\s+")


class TagError(ValueError):
    """A tag given by a person cannot be used (the message says why and what is allowed)."""


@dataclass(frozen=True)
class CaseTag:
    """A case or body tag and how the unit got it (one of :data:`SOURCES`)."""

    tag: str
    source: str

    def as_dict(self) -> dict[str, str]:
        """The result payload's ``case`` object."""
        return {"tag": self.tag, "source": self.source}


def clean_tag(text: str) -> str:
    """``text`` as a tag: spaces trimmed and runs of blanks made one; :class:`TagError` if it is empty,
    longer than :data:`MAX_TAG` characters, or holds control characters."""
    stripped = str(text).strip()  # a trailing newline or tab (a scanner's, a form's) is not part of it
    if _CONTROL.search(stripped):
        raise TagError(f"a case tag cannot hold control characters (got {text!r})")
    tag = _SPACES.sub(" ", stripped)
    if not tag:
        raise TagError("a case tag cannot be empty")
    if len(tag) > MAX_TAG:
        raise TagError(f"a case tag is at most {MAX_TAG} characters (got {len(tag)})")
    return tag


def given_tag(text: str | None, source: str) -> CaseTag | None:
    """A tag the operator gave (``trigger`` or ``command``); None when none was; TagError when unusable."""
    if text is None or text == "":
        return None
    return CaseTag(clean_tag(text), source)


def folder_tag(rel: str) -> CaseTag | None:
    """The case named by a photo's folder: the first folder of its path inside the watched folder
    (``BODY-17/IMG_0001.jpg`` -> ``BODY-17``). None for photos directly in the folder, a camera card's
    ``DCIM`` tree, or a folder name that is not a usable tag."""
    parts = PurePosixPath(rel.replace("\\", "/")).parts
    if len(parts) < 2 or parts[0].lower() in NOT_A_CASE:
        return None
    try:
        return CaseTag(clean_tag(parts[0]), "folder")
    except TagError:
        return None


def choose(*tags: CaseTag | None) -> CaseTag | None:
    """The most specific of ``tags`` (by :data:`SOURCES` order); None when there is none."""
    present = [t for t in tags if t is not None]
    return min(present, key=lambda t: SOURCES.index(t.source)) if present else None


class CodeReader:
    """Reads QR codes and barcodes in an image (one per thread). ``kinds`` chooses which detectors run;
    ``pattern``, when set, is a regular expression a code's whole text must match to count as a tag, so
    a product barcode or a poster's QR code in the scene is not taken for a case. ``max_side`` > 0 reads
    codes on the image shrunk to that many pixels (faster on large photos; small codes may be missed)."""

    def __init__(self, kinds: tuple[str, ...], pattern: str = "", max_side: int = 0) -> None:
        unknown = [k for k in kinds if k not in CODE_KINDS]
        if unknown:
            raise ValueError(f"unknown code kinds {unknown}; known: {', '.join(CODE_KINDS)}")
        self.kinds = tuple(kinds)
        self.pattern = re.compile(pattern) if pattern else None
        self.max_side = max_side
        import cv2  # here, not at import: `edgeface trigger` imports this module and needs no OpenCV

        self._cv2: Any = cv2
        # The ArUco-based QR detector is as good and ~4x faster on frames without a code than the classic
        # one, which stays as the decoder of last resort for a code located but not decoded.
        self._qr: Any = cv2.QRCodeDetectorAruco() if "qrcode" in kinds else None
        self._qr_single: Any = cv2.QRCodeDetector() if "qrcode" in kinds else None
        self._bar: Any = cv2.barcode.BarcodeDetector() if "barcode" in kinds else None

    @property
    def enabled(self) -> bool:
        return bool(self.kinds)

    def read(self, rgb: np.ndarray) -> list[CaseTag]:
        """Every usable code in ``rgb`` (HxWx3 uint8), QR codes first, each text once."""
        if not self.kinds:
            return []
        cv2 = self._cv2
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        scale = self.max_side / max(gray.shape[:2]) if self.max_side else 1.0
        if scale < 1:
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        found: list[CaseTag] = []
        if self._qr is not None:
            found += [CaseTag(t, "qrcode") for t in self._qr_texts(gray)]
        if self._bar is not None:
            found += [CaseTag(t, "barcode") for t in self._bar_texts(gray)]
        out: dict[str, CaseTag] = {}
        for t in found:
            try:
                tag = clean_tag(t.tag)
            except TagError:
                continue
            if self.pattern is not None and not self.pattern.fullmatch(tag):
                log.debug("capture.code_ignored", code=tag[:40], hint="does not match capture.tags.pattern")
                continue
            out.setdefault(tag, CaseTag(tag, t.source))
        return list(out.values())

    def _qr_texts(self, gray: np.ndarray) -> list[str]:
        try:
            ok, texts, points, _ = self._qr.detectAndDecodeMulti(gray)
        except self._cv2.error:
            return []
        if ok and any(texts):
            return [str(t) for t in texts if t]
        if points is None or not len(points):
            return []
        text, _, _ = self._qr_single.detectAndDecode(gray)  # located, not decoded: the single-code decoder may read it
        return [str(text)] if text else []

    def _bar_texts(self, gray: np.ndarray) -> list[str]:
        try:
            result = self._bar.detectAndDecodeWithType(gray)
        except self._cv2.error:
            return []
        ok, texts = result[0], result[1]
        return [str(t) for t in texts if t] if ok else []


def code_tag(tags: list[CaseTag]) -> CaseTag | None:
    """The photo's tag among the codes read in it: the first; several different ones are logged (the
    reviewer sees the first; the others are in the unit's log)."""
    if len(tags) > 1:
        log.warning(
            "capture.codes_several",
            codes=[t.tag[:40] for t in tags[:5]],
            hint="the first is the result's case; set capture.tags.pattern to ignore codes that are no case",
        )
    return tags[0] if tags else None
