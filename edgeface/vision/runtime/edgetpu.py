"""Will a model map onto the Coral Edge TPU? Its operators checked against the Edge TPU compiler's list.

:data:`SUPPORTED` is the table "Supported operations" of Coral's "TensorFlow models on the Edge TPU"
(coral.ai/docs/edgetpu/models-intro, compiler 16 / runtime 14, the last release), transcribed with
each operator's minimum runtime version and its limits, by TFLite builtin name. :func:`check` applies it
with the general rules on that page: 8-bit quantized tensors only (int32 constants such as biases
allowed), static shapes, at most 3 dimensions larger than 1, one subgraph. The compiler maps the graph
from the start up to the first operator it cannot map; that operator and every one after it run on the
CPU, so :attr:`EdgeTpuReport.mapped` counts the prefix, not all supported operators.

What this cannot know (only ``edgetpu_compiler`` and the chip can say): operator versions the compiler
does not support, size-dependent refusals (ResizeBilinear, large reshapes), on-chip memory (parameters
beyond ~8 MB stream from the host), and numerical agreement on the chip.
"""

from __future__ import annotations

from dataclasses import dataclass

from .oplist import ModelOps, OpNode, list_ops

SOURCE = "coral.ai/docs/edgetpu/models-intro, 'Supported operations' (Edge TPU compiler 16, runtime 14)"


@dataclass(frozen=True)
class EdgeTpuOp:
    runtime: str  # minimum Edge TPU runtime version: "all", "13+", "14+"
    limits: str = ""  # the documented limitation, shortened


SUPPORTED: dict[str, EdgeTpuOp] = {
    "ADD": EdgeTpuOp("all"),
    "AVERAGE_POOL_2D": EdgeTpuOp("all", "no fused activation function"),
    "CONCATENATION": EdgeTpuOp("all", "no fused activation; a constant input only as the 2nd of 2, all zeros"),
    "CONV_2D": EdgeTpuOp("all", "same dilation in x and y"),
    "DEPTHWISE_CONV_2D": EdgeTpuOp("all", "same dilation in x and y (runtime 13+; none before)"),
    "EXPAND_DIMS": EdgeTpuOp("13+"),
    "FULLY_CONNECTED": EdgeTpuOp("all", "default weights format only; one-dimensional output"),
    "L2_NORMALIZATION": EdgeTpuOp("all"),
    "LOGISTIC": EdgeTpuOp("all"),
    "LSTM": EdgeTpuOp("14+", "unidirectional only"),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": EdgeTpuOp("14+", "unidirectional only"),
    "MAXIMUM": EdgeTpuOp("all"),
    "MAX_POOL_2D": EdgeTpuOp("all", "no fused activation function"),
    "MEAN": EdgeTpuOp("all", "not over the batch dimension; a z-reduction needs z a multiple of 4"),
    "MINIMUM": EdgeTpuOp("all"),
    "MUL": EdgeTpuOp("all"),
    "PACK": EdgeTpuOp("13+", "not along the batch dimension"),
    "PAD": EdgeTpuOp("all", "no padding of the batch dimension (x/y only before runtime 13)"),
    "PRELU": EdgeTpuOp("13+", "alpha one-dimensional (one value per channel)"),
    "QUANTIZE": EdgeTpuOp("13+"),
    "REDUCE_MAX": EdgeTpuOp("14+", "not over the batch dimension"),
    "REDUCE_MIN": EdgeTpuOp("14+", "not over the batch dimension"),
    "RELU": EdgeTpuOp("all"),
    "RELU6": EdgeTpuOp("all"),
    "RELU_N1_TO_1": EdgeTpuOp("all"),
    "RESHAPE": EdgeTpuOp("all", "some reshapes of large tensors are not mapped"),
    "RESIZE_BILINEAR": EdgeTpuOp("all", "3-D input/output; some sizes not mapped to keep precision"),
    "RESIZE_NEAREST_NEIGHBOR": EdgeTpuOp("all", "3-D input/output; some sizes not mapped to keep precision"),
    "RSQRT": EdgeTpuOp("14+"),
    "SLICE": EdgeTpuOp("all"),
    "SOFTMAX": EdgeTpuOp("all", "1-D input of at most 16,000 elements"),
    "SPACE_TO_DEPTH": EdgeTpuOp("all"),
    "SPLIT": EdgeTpuOp("all", "not along the batch dimension"),
    "SQUARED_DIFFERENCE": EdgeTpuOp("14+"),
    "SQUEEZE": EdgeTpuOp("all"),
    "STRIDED_SLICE": EdgeTpuOp("all", "all strides 1; no ellipsis or new-axis mask"),
    "SUB": EdgeTpuOp("all"),
    "SUM": EdgeTpuOp("13+", "not over the batch dimension"),
    "TANH": EdgeTpuOp("all"),
    "TRANSPOSE": EdgeTpuOp("14+"),
    "TRANSPOSE_CONV": EdgeTpuOp("13+"),
}
COMPILED_OP = "edgetpu-custom-op"  # what edgetpu_compiler puts in place of the part it mapped
EIGHT_BIT = ("INT8", "UINT8")


@dataclass(frozen=True)
class OpVerdict:
    node: OpNode
    supported: bool
    why: str  # "" when supported; else what keeps it on the CPU


@dataclass(frozen=True)
class EdgeTpuReport:
    ops: ModelOps
    verdicts: tuple[OpVerdict, ...]
    model_problems: tuple[str, ...]  # what stops the whole model (float input, dynamic shapes, subgraphs)

    @property
    def total(self) -> int:
        return len(self.verdicts)

    @property
    def supported(self) -> int:
        return sum(v.supported for v in self.verdicts)

    @property
    def mapped(self) -> int:
        """Operators the compiler would map: the supported prefix (0 if the model as a whole is refused)."""
        if self.model_problems:
            return 0
        for i, v in enumerate(self.verdicts):
            if not v.supported:
                return i
        return self.total

    @property
    def cpu(self) -> list[OpVerdict]:
        """The operators that would run on the CPU: from the first unsupported one on."""
        return list(self.verdicts[self.mapped :])

    def to_dict(self) -> dict[str, object]:
        return {
            "source": SOURCE,
            "operators": self.total,
            "listed": sum(1 for n in self.ops.nodes if n.op in SUPPORTED),
            "supported": self.supported,
            "mapped": self.mapped,
            "model_problems": list(self.model_problems),
            "by_op": {
                op: {"count": n, "supported": SUPPORTED.get(op) is not None} for op, n in self.ops.counts().items()
            },
            "cpu": [
                {"index": v.node.index, "op": v.node.op, "why": v.why or "after the first CPU operator"}
                for v in self.cpu
            ],
        }


def _node_problem(node: OpNode) -> str:
    if node.op == COMPILED_OP:
        return "already compiled for the Edge TPU"
    spec = SUPPORTED.get(node.op)
    if spec is None:
        return f"{node.op} is not in the Edge TPU's operation list"
    for t in (*node.inputs, *node.outputs):
        if t.type in EIGHT_BIT or (t.constant and t.type == "INT32"):
            continue
        return f"tensor {t.name!r} is {t.type}: the Edge TPU computes on 8-bit quantized tensors only"
    for t in node.outputs:
        if sum(1 for d in t.shape if d > 1) > 3:
            return f"tensor {t.name!r} {list(t.shape)} has more than 3 dimensions larger than 1"
    dilation = node.options.get("dilation")
    if dilation is not None and dilation[0] != dilation[1]:
        return f"dilation {dilation} differs in x and y"
    if node.op in ("AVERAGE_POOL_2D", "MAX_POOL_2D") and node.options.get("fused_activation", 0) != 0:
        return "pooling with a fused activation function"
    paddings = node.options.get("paddings")
    if paddings and any(paddings[0]):
        return "padding of the batch dimension"
    return ""


def check(model: bytes) -> EdgeTpuReport:
    """Which of ``model``'s operators the Edge TPU compiler can map, by the documented rules."""
    ops = list_ops(model)
    problems = []
    if ops.subgraphs != 1:
        problems.append(f"{ops.subgraphs} subgraphs: the compiler maps one")
    for t in ops.inputs:
        if t.type not in EIGHT_BIT:
            problems.append(f"input {t.name!r} is {t.type}: the model must be full-integer (int8/uint8) quantized")
        if t.dynamic:
            problems.append(
                f"input {t.name!r} has a dynamic batch {list(t.signature)}: fix it at 1 first "
                "(edgeface.vision.runtime.oplist.with_static_batch; the delegate takes static shapes only)"
            )
    inner = [t for n in ops.nodes for t in n.outputs if t.dynamic and t.signature[1:].count(-1)]
    if inner:
        problems.append(f"{len(inner)} tensors with dynamic dimensions besides the batch (first: {inner[0].name!r})")
    verdicts = []
    for node in ops.nodes:
        why = _node_problem(node)
        verdicts.append(OpVerdict(node, not why, why))
    return EdgeTpuReport(ops, tuple(verdicts), tuple(problems))
