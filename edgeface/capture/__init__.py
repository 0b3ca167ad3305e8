"""Capture sources: one small module per kind of camera, one interface (:class:`Source`).

=============  ==============================================  =====================================
``folder``     photos copied into a folder (card, phone)        :mod:`edgeface.capture.folder`
``opencv``     USB camera, RTSP/HTTP, GStreamer, video file     :mod:`edgeface.capture.opencv`
``picamera2``  Raspberry Pi CSI camera (optional package)       :mod:`edgeface.capture.picamera2`
=============  ==============================================  =====================================

    source = make_source(config)      # from [capture] and the source's own section
    source.open()
    frame = source.read(timeout=1.0)  # Frame (RGB image or a file path), None, or EndOfSource
    source.done(frame, Outcome("done", faces=1, results=(...)))
    source.shutdown()

Beside the sources: :mod:`~edgeface.capture.triggers` (what fires a capture in trigger mode, and the tag
it carries), :mod:`~edgeface.capture.tags` (case and body tags: given, read from QR codes and barcodes,
or from the folder), :mod:`~edgeface.capture.place` (EXIF GPS, gpsd, a fixed place) and
:mod:`~edgeface.capture.context` (both, attached to each frame on its way to the result).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .base import EndOfSource, Frame, Outcome, Source
from .triggers import TriggerHub

if TYPE_CHECKING:
    from ..config import Config


def make_source(config: Config, state_dir: Path | None = None) -> Source:
    """The source ``capture.source`` names, configured from its section (imports happen here, lazily)."""
    kind = config.capture.source
    name = config.capture.name
    if kind == "folder":
        from .folder import FolderSource

        return FolderSource(config.capture.folder, state_dir or config.run.state_dir, name)
    if kind == "opencv":
        from .opencv import OpenCVSource

        return OpenCVSource(config.capture.opencv, name)
    if kind == "picamera2":
        from .picamera2 import Picamera2Source

        return Picamera2Source(config.capture.picamera2, name)
    raise ValueError(f"unknown capture.source {kind!r}")  # the config loader only lets known names through


__all__ = ["EndOfSource", "Frame", "Outcome", "Source", "TriggerHub", "make_source"]
