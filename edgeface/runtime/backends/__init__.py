"""Inference backends, one small module each (CPU/XNNPACK, Coral Edge TPU, GPU, external delegate).

Each module exposes ``interpreter_options(cfg, runtime) -> dict`` with the keyword arguments for the
TFLite ``Interpreter``, and raises :class:`~edgeface.errors.BackendUnavailable` with what is missing
and what to do when its hardware or library is absent.
"""

from __future__ import annotations

from typing import Any

from ...config import RuntimeConfig
from ..loader import RuntimeInfo
from . import cpu, edgetpu, external, gpu

BACKENDS = {"cpu": cpu, "edgetpu": edgetpu, "gpu": gpu, "external": external}


def interpreter_options(cfg: RuntimeConfig, runtime: RuntimeInfo) -> dict[str, Any]:
    return BACKENDS[cfg.backend].interpreter_options(cfg, runtime)
