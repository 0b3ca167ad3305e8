"""One loaded ``.tflite`` model: real-valued arrays in, real-valued arrays out.

The caller owns the object (nothing is loaded at import time). Calls are serialised with a lock
because a TFLite interpreter must not be invoked from two threads at once; use one model object per
worker thread for parallelism.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from ...errors import BackendUnavailable, ModelError
from ...logs import get_logger
from ..settings import RuntimeConfig
from . import backends
from .loader import runtime_info
from .quant import TensorSpec, dequantize, is_quantized, quantize
from .quiet import native_chatter_filtered

__all__ = ["TFLiteModel", "TensorSpec"]

log = get_logger(__name__)


class TFLiteModel:
    """A TFLite interpreter with its backend applied and quantization handled at the edges."""

    def __init__(self, content: bytes, runtime: RuntimeConfig | None = None, *, name: str = "model") -> None:
        runtime = runtime or RuntimeConfig()
        rt = runtime_info()
        options = backends.interpreter_options(runtime, rt)
        t0 = time.perf_counter()
        try:
            with native_chatter_filtered():
                self._interp = rt.module.Interpreter(model_content=content, **options)
                self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            if runtime.backend != "cpu":
                # the delegate loaded but could not take this model (wrong file for it, a device error):
                # a backend problem, so the caller may run the model on the CPU instead
                raise BackendUnavailable(
                    f"{name}: the {runtime.backend} backend could not prepare this model ({e}). "
                    f"{backends.BACKENDS[runtime.backend].advice}"
                ) from e
            raise ModelError(
                f"{name}: the TFLite runtime ({rt.package} {rt.version}) cannot load this model: {e}. "
                "Check that the file is a complete .tflite model (its SHA-256 is in the model card)."
            ) from e
        self.name = name
        self.backend = runtime.backend
        self._lock = threading.Lock()
        self._refresh_specs()
        log.debug(
            "model.loaded",
            model=name,
            runtime=f"{rt.package} {rt.version}",
            backend=runtime.backend,
            threads=runtime.num_threads,
            ms=round((time.perf_counter() - t0) * 1000, 1),
        )

    @classmethod
    def from_file(cls, path: str | Path, runtime: RuntimeConfig | None = None) -> TFLiteModel:
        p = Path(path)
        try:
            content = p.read_bytes()
        except OSError as e:
            raise ModelError(f"cannot read model file {p}: {e}") from e
        return cls(content, runtime, name=p.name)

    def _refresh_specs(self) -> None:
        self.inputs = [TensorSpec.from_details(d) for d in self._interp.get_input_details()]
        self.outputs = [TensorSpec.from_details(d) for d in self._interp.get_output_details()]

    @property
    def quantized(self) -> bool:
        return any(is_quantized(s) for s in self.inputs)

    def output_index(self, name: str) -> int:
        """Position of the output tensor called ``name`` (as written in the model card)."""
        for i, spec in enumerate(self.outputs):
            if spec.name == name:
                return i
        raise ModelError(
            f"{self.name}: no output tensor named {name!r}; it has "
            + ", ".join(s.name for s in self.outputs)
            + ". The model card does not match the model file."
        )

    def _ensure_batch(self, batch: int) -> None:
        spec = self.inputs[0]
        if spec.shape[0] == batch:
            return
        self._interp.resize_tensor_input(spec.index, [batch, *spec.shape[1:]])
        self._interp.allocate_tensors()
        self._refresh_specs()

    def run(self, *arrays: np.ndarray) -> list[np.ndarray]:
        """Run once. Inputs are real-valued (quantized here if the model is); outputs are float32.

        The first dimension of the first input may differ from the model's batch size; the
        interpreter is resized to it (kept for the next call).
        """
        if len(arrays) != len(self.inputs):
            raise ValueError(f"{self.name} takes {len(self.inputs)} inputs, got {len(arrays)}")
        with self._lock:
            self._ensure_batch(int(arrays[0].shape[0]))
            for spec, arr in zip(self.inputs, arrays, strict=True):
                if tuple(arr.shape) != spec.shape:
                    raise ValueError(f"{self.name}: input {spec.name} wants shape {spec.shape}, got {arr.shape}")
                self._interp.set_tensor(spec.index, quantize(arr, spec))
            self._interp.invoke()
            return [dequantize(self._interp.get_tensor(s.index), s) for s in self.outputs]
