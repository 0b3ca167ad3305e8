"""Printing benchmark tables and writing their figures as JSON."""

from __future__ import annotations

import contextlib
import contextvars
import json
import platform
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import numpy as np


def percentiles(values_ms: list[float], qs: tuple[float, ...] = (50, 95)) -> dict[str, float]:
    if not values_ms:
        return {f"p{int(q)}": float("nan") for q in qs}
    arr = np.asarray(values_ms, dtype=np.float64)
    return {f"p{int(q)}": round(float(np.percentile(arr, q)), 3) for q in qs}


def rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def current_rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        import os

        return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except OSError:
        return rss_mb()


def sqlite_memory_mb() -> float | None:
    """Heap held by SQLite in this process (page caches of every connection), in MiB; None where unknown.

    Looked up through Python's own ``_sqlite3`` module, so it is the library the outbox uses even where
    that is linked in statically.
    """
    try:
        import _sqlite3
        import ctypes

        fn = ctypes.CDLL(_sqlite3.__file__).sqlite3_memory_used
        fn.restype = ctypes.c_int64
        return round(fn() / 2**20, 2)
    except (OSError, AttributeError, ImportError):
        return None


def machine() -> dict[str, Any]:
    import os

    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def table(headers: list[str], rows: list[list[Any]]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}"
        return str(v)

    cells = [[fmt(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.rjust(w) if _numeric(c) else c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(out)


def _numeric(s: str) -> bool:
    try:
        float(s.rstrip("%"))
        return True
    except ValueError:
        return False


_FIGURES_TO: contextvars.ContextVar[TextIO | None] = contextvars.ContextVar("figures_to", default=None)


@contextlib.contextmanager
def figures_to(stream: TextIO) -> Iterator[None]:
    """While active, :func:`write_json` also prints the figures on ``stream`` (``bench ... --json``)."""
    token = _FIGURES_TO.set(stream)
    try:
        yield
    finally:
        _FIGURES_TO.reset(token)


def write_json(path: Path | None, name: str, figures: dict[str, Any]) -> None:
    """The figures with the machine they were measured on: to ``path`` if given, and to stdout under --json."""
    doc = {"benchmark": name, "machine": machine(), **figures}
    stream = _FIGURES_TO.get()
    if stream is not None:
        stream.write(json.dumps(doc, default=float) + "\n")
        stream.flush()
    if path is not None:
        Path(path).write_text(json.dumps(doc, indent=2, default=float) + "\n")
