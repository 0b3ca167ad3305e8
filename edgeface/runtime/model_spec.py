"""What the runtime knows about one input or output tensor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    name: str
    index: int
    shape: tuple[int, ...]
    dtype: type
    scales: np.ndarray  # float32, one per channel (or a single value); all zero if not quantized
    zero_points: np.ndarray  # int64, same length as scales
    axis: int  # quantized dimension for per-channel tensors

    @classmethod
    def from_details(cls, d: dict[str, Any]) -> "TensorSpec":
        qp = d.get("quantization_parameters") or {}
        scales = np.asarray(qp.get("scales", []), dtype=np.float32)
        zeros = np.asarray(qp.get("zero_points", []), dtype=np.int64)
        if scales.size == 0:
            scale, zero = d.get("quantization", (0.0, 0))
            scales = np.asarray([scale], dtype=np.float32)
            zeros = np.asarray([zero], dtype=np.int64)
        return cls(
            name=str(d["name"]),
            index=int(d["index"]),
            shape=tuple(int(s) for s in d["shape"]),
            dtype=np.dtype(d["dtype"]).type,
            scales=scales,
            zero_points=zeros,
            axis=int(qp.get("quantized_dimension", 0)),
        )
