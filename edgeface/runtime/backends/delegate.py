"""Loading a delegate shared library with an error that says what to do."""

from __future__ import annotations

import ctypes
from typing import Any

from ...errors import BackendUnavailable
from ..loader import RuntimeInfo


def load(runtime: RuntimeInfo, library: str, options: dict[str, str], advice: str) -> Any:
    # Open the library ourselves first: when it is missing, the runtime's Delegate object fails half-built
    # and its destructor prints a second, confusing error.
    try:
        ctypes.CDLL(library)
    except OSError as e:
        raise BackendUnavailable(f"could not load delegate {library!r} ({e}). {advice}") from e
    try:
        return runtime.module.load_delegate(library, options or None)
    except (ValueError, OSError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BackendUnavailable(f"could not load delegate {library!r} ({first}). {advice}") from e
