"""The TFLite runtime layer: one place that loads interpreters, applies backends and (de)quantizes.

Everything that runs a ``.tflite`` model goes through :class:`edgeface.runtime.model.TFLiteModel`.
"""

from .model import TFLiteModel
from .model_spec import TensorSpec
from .loader import runtime_info

__all__ = ["TFLiteModel", "TensorSpec", "runtime_info"]
