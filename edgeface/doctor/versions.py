"""Python and package versions: the interpreter is one edgeface supports, and every runtime dependency
is installed at a version it declares (read from the installed package's own metadata, so the check
follows ``pyproject.toml`` without a copy of it)."""

from __future__ import annotations

import platform
import re
import sys
from importlib import metadata

from .report import Check

DIST = "edgeface"


def _version_tuple(text: str) -> tuple[int, ...]:
    """Leading numeric parts of a version (``2.1.0rc1`` -> (2, 1, 0)): enough for ``>=`` floors."""
    parts = []
    for piece in text.split("."):
        m = re.match(r"\d+", piece)
        if not m:
            break
        parts.append(int(m.group()))
        if m.end() < len(piece):
            break
    return tuple(parts)


def _marker_applies(marker: str) -> bool | None:
    """Whether a requirement's environment marker holds here: evaluated with ``packaging`` where it is
    installed (it is not an edgeface dependency); without it, extras never apply and any other marker is
    unknown (None)."""
    if not marker:
        return True
    if "extra" in marker:
        return False
    try:
        from packaging.markers import Marker
    except ImportError:
        return None
    return bool(Marker(marker).evaluate({"extra": ""}))


def python_check() -> Check:
    try:
        spec = metadata.metadata(DIST)["Requires-Python"] or ""
        version = metadata.version(DIST)
    except metadata.PackageNotFoundError:
        spec, version = "", "(not installed: a source tree)"
    here = ".".join(str(p) for p in sys.version_info[:3])
    summary = f"Python {here} ({platform.python_implementation()}, {platform.machine()}), edgeface {version}"
    detail = {"python": here, "machine": platform.machine(), "edgeface": version, "requires_python": spec}
    for clause in filter(None, (c.strip() for c in spec.split(","))):
        m = re.match(r"(>=|<=|<|>|==)\s*([\d.]+)$", clause)
        if not m:
            continue
        op, want = m.group(1), _version_tuple(m.group(2))
        have = tuple(sys.version_info[: len(want)])
        ok = {">=": have >= want, "<=": have <= want, "<": have < want, ">": have > want, "==": have == want}[op]
        if not ok:
            return Check(
                "python",
                "fail",
                summary + f", outside the supported {spec}",
                "install edgeface in a virtual environment made with a supported Python",
                detail,
            )
    return Check("python", "ok", summary, detail=detail)


def packages_check() -> Check:
    """Every runtime requirement of the installed edgeface that applies to this machine, with its floor."""
    try:
        requires = metadata.requires(DIST) or []
    except metadata.PackageNotFoundError:
        return Check("packages", "skip", "edgeface is not installed as a package (a source tree): nothing to compare")
    found: dict[str, str] = {}
    problems: list[str] = []
    for req in requires:
        text, _, marker = req.partition(";")
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*(.*)$", text)
        applies = _marker_applies(marker.strip())
        if not m or applies is False:
            continue
        name, spec = m.group(1), m.group(3).strip()
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            if applies:  # None: a marker that cannot be evaluated here may well exclude this machine
                problems.append(f"{name} missing (wants {spec or 'any version'})")
            continue
        found[name] = have
        floor = re.search(r">=\s*([\d.]+)", spec)
        if floor and _version_tuple(have) < _version_tuple(floor.group(1)):
            problems.append(f"{name} {have} is older than {spec}")
    listed = ", ".join(f"{k} {v}" for k, v in found.items())
    detail = {"installed": found, "problems": problems}
    if problems:
        return Check(
            "packages",
            "fail",
            "; ".join(problems),
            f"reinstall edgeface in its virtual environment (pip install --upgrade edgeface) (found: {listed})",
            detail,
        )
    return Check("packages", "ok", listed, detail=detail)
