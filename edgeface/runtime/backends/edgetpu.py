"""Coral Edge TPU backend (USB, M.2 or PCIe), through ``libedgetpu.so.1``."""

from __future__ import annotations

from typing import Any

from ...config import RuntimeConfig
from ..loader import RuntimeInfo
from . import delegate

LIBRARY = "libedgetpu.so.1"
ADVICE = (
    "No Edge TPU was detected. Install the Edge TPU runtime (Debian package libedgetpu1-std from "
    "Coral's repository), plug in the Coral device and check `lsusb` or `ls /dev/apex_0`. The model must "
    "be the full-integer int8 file compiled with edgetpu_compiler. If you do not have a Coral device, set "
    "runtime.backend = \"cpu\"."
)


def interpreter_options(cfg: RuntimeConfig, runtime: RuntimeInfo) -> dict[str, Any]:
    d = delegate.load(runtime, cfg.delegate_path or LIBRARY, cfg.delegate_options, ADVICE)
    return {"num_threads": cfg.num_threads, "experimental_delegates": [d]}
