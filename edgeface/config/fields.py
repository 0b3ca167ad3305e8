"""The one helper a package needs to declare its configuration section.

A section is a frozen dataclass whose fields are made with :func:`setting` (a leaf: default, a one-line
description, an optional numeric range, and for optional settings what "unset" means) or :func:`section`
(a nested table, e.g. ``[capture.folder]``). The class docstring documents the section. This module
imports nothing of edgeface, so any package's ``settings.py`` can use it without an import cycle; the
:mod:`edgeface.config` package imports those settings modules, never the other way round.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any, TypeVar

T = TypeVar("T")


def setting(
    default: Any, doc: str, *, min: float | None = None, max: float | None = None, unset: str | None = None
) -> Any:
    """A config field: its default, a one-line description, and an optional numeric range.

    An optional setting (typed ``X | None``, default ``None``) must say what leaving it out means in
    ``unset`` (e.g. ``"the detector card's calibrated value"``); ``edgeface config defaults`` writes it
    commented out with that text.
    """
    if default is None and not unset:
        raise TypeError(f"optional setting {doc[:40]!r}...: say what leaving it unset means (unset=...)")
    meta = {"doc": doc, "min": min, "max": max, "unset": unset}
    if isinstance(default, (dict, list)):
        frozen = dict(default) if isinstance(default, dict) else tuple(default)
        return field(default_factory=lambda: type(frozen)(frozen), metadata=meta)
    return field(default=default, metadata=meta)


def section(cls: type[T]) -> T:
    """A nested section (a TOML table inside its parent's, ``[parent.name]``), with its defaults."""
    return field(default_factory=cls, metadata={"section": True})
