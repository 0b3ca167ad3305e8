"""Expanding command-line image arguments (files and folders) in a stable order."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np

from ..errors import ImageError
from ..logs import get_logger
from .app import EXIT_FAILED, progress

if TYPE_CHECKING:
    from ..vision.engine import Engine

log = get_logger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".mpo"}


def expand_images(args: tuple[str, ...] | list[str]) -> list[Path]:
    """Files as given (even with another suffix, so the user gets an error for them), and the image
    files inside folders, recursively, sorted."""
    out: list[Path] = []
    for a in args:
        p = Path(a)
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES))
        else:
            out.append(p)
    return out


def for_each_image(
    engine: Engine,
    paths: list[Path],
    command: str,
    describe: Callable[[Path, np.ndarray], dict[str, Any]],
    show: Callable[[dict[str, Any]], None],
) -> None:
    """Read each image and print ``{"image": path, **describe(path, image)}``, in input order.

    An unreadable image gets an error record and a log event, the others go on; exit status 1 at the
    end if any failed (the convention of every per-image command).
    """
    failed = 0
    with progress(paths, command) as bar:
        for path in bar:
            try:
                image = engine.load_image(path)
            except ImageError as e:
                failed += 1
                # The record is the report (stdout, in input order); the log line is for collectors only.
                error = str(e).removeprefix(f"{path}: ")
                log.debug(f"{command}.image_failed", image=str(path), error=error)
                show({"image": str(path), "error": error})
                continue
            show({"image": str(path), **describe(path, image)})
    if failed:
        raise click.exceptions.Exit(EXIT_FAILED)
