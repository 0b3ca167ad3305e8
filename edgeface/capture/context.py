"""A frame's case tag and place, kept in ``frame.meta`` on its way to the result.

Two moments: when the frame is captured (:func:`stamp`: the place, from the photo's EXIF or the unit's
gpsd fix at that moment or the configured place; the folder's case), and when an inference worker has
decoded it (:class:`CodeReaders`: a case read from a QR code or barcode in the picture). A tag that
came with the trigger is set by the capture loop. :func:`case_of` and :func:`location_of` give the
result's ``case`` and ``location``.
"""

from __future__ import annotations

import re
import threading

import numpy as np

from ..errors import ConfigError
from .base import Frame
from .place import Location, Locator
from .settings import CaptureConfig, CaptureTagsConfig
from .tags import CaseTag, CodeReader, choose, code_tag, folder_tag


def open_locator(cfg: CaptureConfig) -> Locator | None:
    """The place finder ``capture.location`` asks for (starts the gpsd client if listed); None: no sources."""
    return Locator(cfg.location) if cfg.location.sources else None


def stamp(frame: Frame, cfg: CaptureConfig, locator: Locator | None) -> None:
    """At capture: the frame's place and, for a photo of the folder source, its folder's case."""
    rel = frame.meta.get("rel")
    if rel and cfg.tags.folder:
        tag = folder_tag(str(rel))
        if tag is not None:
            frame.meta["folder_tag"] = tag
    if locator is not None:
        loc = locator.locate(frame.path)
        if loc is not None:
            frame.meta["location"] = loc


class CodeReaders:
    """One :class:`~edgeface.capture.tags.CodeReader` per inference thread (OpenCV detectors are not shared)."""

    def __init__(self, cfg: CaptureTagsConfig) -> None:
        try:
            re.compile(cfg.pattern)
        except re.error as e:
            raise ConfigError(f"capture.tags.pattern = {cfg.pattern!r} is not a regular expression: {e}") from None
        self.cfg = cfg
        self._local = threading.local()

    def read_into(self, frame: Frame, rgb: np.ndarray) -> None:
        """Read the codes in the decoded frame (a photo, a triggered frame, or any with ``capture.tags.streams``);
        the first usable one becomes ``meta['code_tag']``."""
        if not self.cfg.codes or not (self.cfg.streams or "rel" in frame.meta or "burst" in frame.meta):
            return  # a continuous stream's frame: codes are read on photos and triggered frames only
        reader: CodeReader | None = getattr(self._local, "reader", None)
        if reader is None:
            reader = self._local.reader = CodeReader(tuple(self.cfg.codes), self.cfg.pattern, self.cfg.max_side)
        tag = code_tag(reader.read(rgb))
        if tag is not None:
            frame.meta["code_tag"] = tag


def case_of(frame: Frame) -> CaseTag | None:
    """The frame's case: the trigger's tag, else a code in the picture, else its folder (tags.choose)."""
    m = frame.meta
    return choose(m.get("tag"), m.get("code_tag"), m.get("folder_tag"))


def location_of(frame: Frame) -> Location | None:
    loc = frame.meta.get("location")
    return loc if isinstance(loc, Location) else None
