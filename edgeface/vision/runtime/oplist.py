"""What a ``.tflite`` file contains: its operators in execution order, with their tensors' types and shapes.

Read straight from the flatbuffer with the schema module that ``ai-edge-litert`` ships
(``ai_edge_litert.schema_py_generated``), so no TensorFlow is needed; it answers "which operators does this
model use" for accelerator checks (:mod:`.edgetpu`) and the static-shape rewrite a compiler needs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from ...errors import BackendUnavailable, ModelError


def schema() -> ModuleType:
    """The TFLite flatbuffer schema module (from ai-edge-litert), or a clear error."""
    try:
        return importlib.import_module("ai_edge_litert.schema_py_generated")
    except ImportError as e:
        raise BackendUnavailable(
            f"reading a model's operators needs the TFLite schema that ai-edge-litert ships ({e}); "
            "`pip install ai-edge-litert` (tflite-runtime does not include it)"
        ) from e


@dataclass(frozen=True)
class TensorInfo:
    name: str
    type: str  # "INT8", "FLOAT32", ...
    shape: tuple[int, ...]
    signature: tuple[int, ...]  # the shape with -1 for dynamic dimensions (== shape when static)
    constant: bool  # has data in the file (weights, biases, shape operands)

    @property
    def dynamic(self) -> bool:
        return any(d < 0 for d in self.signature)


@dataclass(frozen=True)
class OpNode:
    """One operator of subgraph 0, in execution order."""

    index: int
    op: str  # builtin operator name ("CONV_2D"), or the custom code of a custom operator
    version: int
    custom: bool
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    options: dict[str, Any] = field(default_factory=dict)  # the few options accelerator checks read


@dataclass(frozen=True)
class ModelOps:
    subgraphs: int
    nodes: tuple[OpNode, ...]
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]

    def counts(self) -> dict[str, int]:
        """Operator name -> number of nodes, in order of first use."""
        out: dict[str, int] = {}
        for n in self.nodes:
            out[n.op] = out.get(n.op, 0) + 1
        return out


def _names(enum: type) -> dict[int, str]:
    return {v: k for k, v in vars(enum).items() if not k.startswith("_") and isinstance(v, int)}


def _options(s: ModuleType, op: Any, name: str, buffers: Any, tensor_of: Any) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    table = op.BuiltinOptions()
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D") and table is not None:
        cls = s.Conv2DOptions if name == "CONV_2D" else s.DepthwiseConv2DOptions
        o = cls()
        o.Init(table.Bytes, table.Pos)
        opts["dilation"] = (int(o.DilationHFactor()), int(o.DilationWFactor()))
        opts["fused_activation"] = int(o.FusedActivationFunction())
    elif name in ("AVERAGE_POOL_2D", "MAX_POOL_2D") and table is not None:
        o = s.Pool2DOptions()
        o.Init(table.Bytes, table.Pos)
        opts["fused_activation"] = int(o.FusedActivationFunction())
    elif name == "PAD" and op.InputsLength() > 1:
        t = tensor_of(op.Inputs(1))
        data = buffers(t.Buffer())
        if data is not None:
            opts["paddings"] = np.frombuffer(data, dtype=np.int32).reshape(-1, 2).tolist()
    return opts


def list_ops(model: bytes) -> ModelOps:
    """The operators of a ``.tflite`` model (subgraph 0, execution order) with their tensors."""
    s = schema()
    try:
        m = s.Model.GetRootAsModel(model, 0)
        builtin = _names(s.BuiltinOperator)
        types = _names(s.TensorType)
        codes = []
        for i in range(m.OperatorCodesLength()):
            oc = m.OperatorCodes(i)
            code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
            custom = oc.CustomCode()
            name = custom.decode() if custom else builtin.get(code, f"BUILTIN_{code}")
            codes.append((name, int(oc.Version()), bool(custom)))
        sg = m.Subgraphs(0)

        def buffer(i: int) -> bytes | None:
            b = m.Buffers(i)
            return None if b is None or b.DataLength() == 0 else b.DataAsNumpy().tobytes()

        def tensor(i: int) -> Any:
            return sg.Tensors(i)

        def info(i: int) -> TensorInfo:
            t = sg.Tensors(i)
            shape = tuple(int(d) for d in (t.ShapeAsNumpy() if t.ShapeLength() else []))
            sig = tuple(int(d) for d in t.ShapeSignatureAsNumpy()) if t.ShapeSignatureLength() else shape
            has_data = (b := m.Buffers(t.Buffer())) is not None and b.DataLength() > 0
            return TensorInfo(t.Name().decode(), types.get(int(t.Type()), str(t.Type())), shape, sig, has_data)

        nodes = []
        for j in range(sg.OperatorsLength()):
            op = sg.Operators(j)
            name, version, custom = codes[op.OpcodeIndex()]
            ins = tuple(info(int(i)) for i in (op.InputsAsNumpy() if op.InputsLength() else []) if i >= 0)
            outs = tuple(info(int(i)) for i in (op.OutputsAsNumpy() if op.OutputsLength() else []))
            nodes.append(OpNode(j, name, version, custom, ins, outs, _options(s, op, name, buffer, tensor)))
        return ModelOps(
            subgraphs=int(m.SubgraphsLength()),
            nodes=tuple(nodes),
            inputs=tuple(info(int(i)) for i in sg.InputsAsNumpy()),
            outputs=tuple(info(int(i)) for i in sg.OutputsAsNumpy()),
        )
    except (IndexError, ValueError, AttributeError, TypeError) as e:
        raise ModelError(f"not a readable .tflite model ({type(e).__name__}: {e})") from e


def with_static_batch(model: bytes, batch: int = 1) -> bytes:
    """The same model with every dynamic (-1) batch dimension fixed at ``batch``: what accelerator
    compilers need (the Edge TPU takes static shapes only). Weights and graph are unchanged."""
    s = schema()
    import flatbuffers

    m = s.ModelT.InitFromPackedBuf(model, 0)
    changed = 0
    for sg in m.subgraphs or []:
        for t in sg.tensors or []:
            sig = t.shapeSignature
            if sig is None or len(sig) == 0 or not any(int(d) < 0 for d in sig):
                continue
            if any(int(d) < 0 for d in list(sig)[1:]):
                raise ModelError(f"tensor {t.name!r} has a dynamic dimension other than the batch: {list(sig)}")
            shape = [batch, *[int(d) for d in list(sig)[1:]]]
            t.shape = shape
            t.shapeSignature = None
            changed += 1
    if not changed:
        return model
    builder = flatbuffers.Builder(len(model) + 4096)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
