"""Quantization of model inputs and outputs, in one place.

A quantized tensor stores ``q`` with ``real = scale * (q - zero_point)``; per-channel tensors carry
one scale per channel along ``axis``. Scale 0 means the tensor is not quantized.
"""

from __future__ import annotations

import numpy as np

from .model_spec import TensorSpec


def is_quantized(spec: TensorSpec) -> bool:
    return spec.dtype in (np.int8, np.uint8, np.int16) and bool(np.any(spec.scales != 0))


def _broadcast(values: np.ndarray, spec: TensorSpec, ndim: int) -> np.ndarray:
    if values.size == 1:
        return values.reshape(())
    shape = [1] * ndim
    shape[spec.axis] = values.size
    return values.reshape(shape)


def quantize(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Real values -> the tensor's integer type (rounded, saturated). Pass-through if not quantized."""
    if not is_quantized(spec):
        return np.asarray(x, dtype=spec.dtype)
    x = np.asarray(x, dtype=np.float32)
    scale = _broadcast(spec.scales, spec, x.ndim)
    zero = _broadcast(spec.zero_points, spec, x.ndim)
    info = np.iinfo(spec.dtype)
    q = np.rint(x / scale) + zero
    return np.clip(q, info.min, info.max).astype(spec.dtype)


def dequantize(q: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """The tensor's integer values -> float32 reals. Float tensors are returned as float32."""
    if not is_quantized(spec):
        return np.asarray(q, dtype=np.float32)
    scale = _broadcast(spec.scales, spec, q.ndim)
    zero = _broadcast(spec.zero_points, spec, q.ndim)
    return (scale * (q.astype(np.float32) - zero)).astype(np.float32)
