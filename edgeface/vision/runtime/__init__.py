"""The TFLite runtime layer: one place that loads interpreters, applies backends and (de)quantizes.

Everything that runs a ``.tflite`` model goes through :class:`~edgeface.vision.runtime.model.TFLiteModel`.

- ``loader.py``: which interpreter package is installed (``ai_edge_litert`` or ``tflite_runtime``)
- ``backends.py``: the inference backends (CPU/XNNPACK, Edge TPU, GPU, external delegate) as one table
- ``quant.py``: :class:`TensorSpec` and the (de)quantization of inputs and outputs
- ``model.py``: :class:`TFLiteModel`, one loaded model, real arrays in and out
- ``select.py``: which backend each model runs on, and the fall back to the CPU (:class:`Placement`)
- ``oplist.py``: a model's operators read from its flatbuffer; the static-batch rewrite compilers need
- ``edgetpu.py``: those operators checked against the Edge TPU compiler's supported-operations list
"""

from .loader import runtime_info
from .model import TFLiteModel
from .quant import TensorSpec

__all__ = ["TFLiteModel", "TensorSpec", "runtime_info"]
