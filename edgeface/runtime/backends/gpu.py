"""GPU backend: the TFLite GPU delegate (OpenCL/OpenGL ES, e.g. Mali or Jetson) as a shared library."""

from __future__ import annotations

from typing import Any

from ...config import RuntimeConfig
from ..loader import RuntimeInfo
from . import delegate

LIBRARY = "libtensorflowlite_gpu_delegate.so"
ADVICE = (
    "The TFLite GPU delegate is not part of the Python wheels: build it from the LiteRT sources "
    "(bazel build -c opt //tflite/delegates/gpu:libtensorflowlite_gpu_delegate.so), put it on the "
    "library path or set runtime.delegate_path to it, and make sure the board's OpenCL driver is "
    "installed. Otherwise set runtime.backend = \"cpu\"."
)


def interpreter_options(cfg: RuntimeConfig, runtime: RuntimeInfo) -> dict[str, Any]:
    d = delegate.load(runtime, cfg.delegate_path or LIBRARY, cfg.delegate_options, ADVICE)
    return {"num_threads": cfg.num_threads, "experimental_delegates": [d]}
