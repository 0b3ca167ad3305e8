"""The ONNX graph as plain steps: each node's op, inputs, outputs, attributes and NumPy weights.

Only what this network uses is supported (Conv, grouped/depthwise included; Clip; Relu; Add; Reshape
to (N, -1); Constant), and anything else stops the conversion with the op's name: a silent
approximation of an unknown op would be worse than no model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SUPPORTED = {"Conv", "Clip", "Relu", "Add", "Reshape", "Constant"}


@dataclass
class Step:
    op: str
    inputs: list[str]
    output: str
    attrs: dict[str, object] = field(default_factory=dict)


@dataclass
class Graph:
    input: str
    input_shape: tuple[int, ...]  # NCHW
    output: str
    steps: list[Step]
    tensors: dict[str, np.ndarray]  # initializers and constants

    @property
    def parameters(self) -> int:
        return int(sum(v.size for v in self.tensors.values() if v.ndim >= 1 and v.size > 2))

    def macs(self) -> int:
        """Multiply-accumulates of one forward pass (convolutions), from the shapes."""
        h, w = self.input_shape[2], self.input_shape[3]
        size = {self.input: (h, w)}
        total = 0
        for s in self.steps:
            if s.op == "Conv":
                wt = self.tensors[s.inputs[1]]
                ih, iw = size[s.inputs[0]]
                (sh, sw), (kh, kw) = s.attrs["strides"], wt.shape[2:]
                p = s.attrs.get("pads", [0, 0, 0, 0])
                oh, ow = (ih + p[0] + p[2] - kh) // sh + 1, (iw + p[1] + p[3] - kw) // sw + 1
                size[s.output] = (oh, ow)
                total += oh * ow * int(np.prod(wt.shape))
            elif s.inputs and s.inputs[0] in size:
                size[s.output] = size[s.inputs[0]]
        return total


def load(path: Path) -> Graph:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))  # reads the external .data file beside it
    g = model.graph
    tensors = {i.name: numpy_helper.to_array(i).astype(np.float32, copy=False) for i in g.initializer}
    steps: list[Step] = []
    for n in g.node:
        if n.op_type not in SUPPORTED:
            raise SystemExit(f"unsupported ONNX op {n.op_type!r} ({n.name}); extend models/mobilefacenet/")
        attrs = {}
        for a in n.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                attrs[a.name] = numpy_helper.to_array(a.t)
            else:
                attrs[a.name] = onnx.helper.get_attribute_value(a)
        if n.op_type == "Constant":
            tensors[n.output[0]] = np.asarray(attrs["value"])
            continue
        steps.append(Step(n.op_type, list(n.input), n.output[0], attrs))
    (inp,) = [i for i in g.input if i.name not in tensors]
    shape = tuple(d.dim_value for d in inp.type.tensor_type.shape.dim)
    return Graph(inp.name, shape, g.output[0].name, steps, tensors)
