"""Find the TFLite interpreter package that is installed: ``ai_edge_litert`` or ``tflite_runtime``.

``ai_edge_litert`` (LiteRT, numpy 2) is the maintained successor and the default dependency;
``tflite_runtime`` (numpy<2) still serves older boards such as 32-bit Raspberry Pi OS. Both expose
the same ``Interpreter`` / ``load_delegate`` API.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from types import ModuleType

from ...errors import BackendUnavailable

_CANDIDATES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter")


@dataclass(frozen=True)
class RuntimeInfo:
    package: str
    version: str
    module: ModuleType


@functools.lru_cache(maxsize=1)
def runtime_info() -> RuntimeInfo:
    """The interpreter module in use (first of ai_edge_litert, tflite_runtime that imports)."""
    errors = []
    for name in _CANDIDATES:
        try:
            module = importlib.import_module(name)
        except ImportError as e:
            errors.append(f"{name}: {e}")
            continue
        package = name.split(".")[0]
        try:
            from importlib.metadata import version

            ver = version(package.replace("_", "-"))
        except Exception:  # noqa: BLE001 - version is informational only
            ver = "unknown"
        return RuntimeInfo(package=package, version=ver, module=module)
    raise BackendUnavailable(
        "no TFLite runtime is installed. Install the default one with `pip install ai-edge-litert` "
        "(or `pip install tflite-runtime` on 32-bit ARM boards). Tried: " + "; ".join(errors)
    )
