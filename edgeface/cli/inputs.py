"""Expanding command-line image arguments (files and folders) in a stable order."""

from __future__ import annotations

from pathlib import Path

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
