"""Loading a delegate shared library with an error that says what to do."""

from __future__ import annotations

from typing import Any

from ...errors import BackendUnavailable
from ..loader import RuntimeInfo


def load(runtime: RuntimeInfo, library: str, options: dict[str, str], advice: str) -> Any:
    try:
        return runtime.module.load_delegate(library, options or None)
    except (ValueError, OSError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BackendUnavailable(f"could not load delegate {library!r} ({first}). {advice}") from e
