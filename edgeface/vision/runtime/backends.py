"""Inference backends as one table: CPU/XNNPACK, Coral Edge TPU, GPU delegate, any external delegate.

Each entry of :data:`BACKENDS` (the names ``runtime.backend`` accepts) says which delegate library it
loads, if any, and what to tell the user when that library or its hardware is missing: a failed load
raises :class:`~edgeface.errors.BackendUnavailable` with the cause and that advice. Adding a backend
that is a TFLite delegate is adding an entry (and its name to ``runtime.backend``'s choices).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

from ...errors import BackendUnavailable, ConfigError
from ..settings import RuntimeConfig
from .loader import RuntimeInfo


@dataclass(frozen=True)
class Backend:
    """One inference backend: the delegate it loads, and what to do when it cannot be loaded."""

    name: str
    summary: str
    delegate: bool = True  # False: the runtime's built-in kernels, nothing to load
    library: str = ""  # the default delegate library; "" means runtime.delegate_path must name one
    library_example: str = ""  # shown when runtime.delegate_path is required and empty
    advice: str = ""  # appended to a failed load: what is missing and what to do

    def interpreter_options(self, cfg: RuntimeConfig, runtime: RuntimeInfo) -> dict[str, Any]:
        """The keyword arguments for the TFLite ``Interpreter`` with this backend applied."""
        opts: dict[str, Any] = {"num_threads": cfg.num_threads}
        if not self.delegate:
            if not cfg.xnnpack:
                opts["experimental_op_resolver_type"] = runtime.module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
            return opts
        library = cfg.delegate_path or self.library
        if not library:
            raise ConfigError(
                f'runtime.backend = "{self.name}" needs runtime.delegate_path, the delegate\'s shared library '
                f"(e.g. {self.library_example})"
            )
        opts["experimental_delegates"] = [load_delegate(runtime, library, cfg.delegate_options, self.advice)]
        return opts


BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend(
            "cpu",
            "the TFLite built-in kernels, accelerated by XNNPACK unless runtime.xnnpack = false",
            delegate=False,
        ),
        Backend(
            "edgetpu",
            "Coral Edge TPU (USB, M.2 or PCIe), through libedgetpu.so.1",
            library="libedgetpu.so.1",
            advice=(
                "No Edge TPU was detected. Install the Edge TPU runtime (Debian package libedgetpu1-std from "
                "Coral's repository), plug in the Coral device and check `lsusb` or `ls /dev/apex_0`. The model "
                "must be the full-integer int8 file compiled with edgetpu_compiler. If you do not have a Coral "
                'device, set runtime.backend = "cpu".'
            ),
        ),
        Backend(
            "gpu",
            "the TFLite GPU delegate (OpenCL/OpenGL ES, e.g. a Mali GPU) as a shared library; not on Jetson (no OpenCL)",
            library="libtensorflowlite_gpu_delegate.so",
            advice=(
                "The TFLite GPU delegate is not part of the Python wheels: build it from the LiteRT sources "
                "(bazel build -c opt //tflite/delegates/gpu:libtensorflowlite_gpu_delegate.so), put it on the "
                "library path or set runtime.delegate_path to it, and make sure the board's OpenCL driver is "
                "installed. A Jetson has no OpenCL driver, so the delegate cannot run there: use the CPU. "
                'Otherwise set runtime.backend = "cpu".'
            ),
        ),
        Backend(
            "external",
            "any other delegate library (an NPU vendor's, e.g. VeriSilicon/NXP libvx_delegate.so)",
            library_example="/usr/lib/libvx_delegate.so",
            advice=(
                "Check that runtime.delegate_path names the vendor's delegate library, that the library is "
                "built for this TFLite version, and that runtime.delegate_options holds the options its "
                'documentation requires. Otherwise set runtime.backend = "cpu".'
            ),
        ),
    )
}


def interpreter_options(cfg: RuntimeConfig, runtime: RuntimeInfo) -> dict[str, Any]:
    """The ``Interpreter`` keyword arguments for the configured ``runtime.backend``."""
    return BACKENDS[cfg.backend].interpreter_options(cfg, runtime)


def load_delegate(runtime: RuntimeInfo, library: str, options: dict[str, str], advice: str) -> Any:
    """Load a delegate shared library, or raise BackendUnavailable with the cause and ``advice``."""
    # Open the library ourselves first: when it is missing, the runtime's Delegate object fails half-built
    # and its destructor prints a second, confusing error.
    try:
        ctypes.CDLL(library)
    except OSError as e:
        raise BackendUnavailable(f"could not load delegate {library!r} ({e}). {advice}") from e
    try:
        return runtime.module.load_delegate(library, options or None)
    except (ValueError, OSError, RuntimeError) as e:
        # the runtime's message, then what the delegate itself reported (libedgetpu: why there is no device)
        said = " ".join(line.strip() for line in str(e).strip().splitlines() if line.strip()) or type(e).__name__
        raise BackendUnavailable(f"could not load delegate {library!r} ({said}). {advice}") from e
