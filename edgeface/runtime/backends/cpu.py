"""CPU backend: the TFLite built-in kernels, accelerated by XNNPACK unless turned off."""

from __future__ import annotations

from typing import Any

from ...config import RuntimeConfig
from ..loader import RuntimeInfo


def interpreter_options(cfg: RuntimeConfig, runtime: RuntimeInfo) -> dict[str, Any]:
    opts: dict[str, Any] = {"num_threads": cfg.num_threads}
    if not cfg.xnnpack:
        opts["experimental_op_resolver_type"] = runtime.module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    return opts
