"""Any other delegate library (an NPU vendor's, e.g. VeriSilicon/NXP ``libvx_delegate.so``)."""

from __future__ import annotations

from typing import Any

from ...config import RuntimeConfig
from ...errors import ConfigError
from ..loader import RuntimeInfo
from . import delegate

ADVICE = (
    "Check that runtime.delegate_path names the vendor's delegate library, that the library is built "
    "for this TFLite version, and that runtime.delegate_options holds the options its documentation "
    "requires. Otherwise set runtime.backend = \"cpu\"."
)


def interpreter_options(cfg: RuntimeConfig, runtime: RuntimeInfo) -> dict[str, Any]:
    if not cfg.delegate_path:
        raise ConfigError(
            "runtime.backend = \"external\" needs runtime.delegate_path, the delegate's shared library "
            "(e.g. /usr/lib/libvx_delegate.so)"
        )
    d = delegate.load(runtime, cfg.delegate_path, cfg.delegate_options, ADVICE)
    return {"num_threads": cfg.num_threads, "experimental_delegates": [d]}
