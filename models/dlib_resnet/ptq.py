"""Post-training quantization of the int8 model, done before and around the TFLite converter.

TFLite's converter alone (min/max calibration, round-to-nearest weights) leaves the int8 model at a
mean cosine to dlib of about 0.99941 with about 1 chip in 300 below 0.999. Measured in a simulation
of the int8 network (below) that agrees with the converted model to within 1 %: once the biases
are corrected, the error comes almost entirely from rounding the activations (rounding the weights
is 5 % of it), most of it from the residual stream (the adds and the convolutions that feed them) in
the last stages, and it is noise, not clipping: the worst chips are not the ones with out-of-range
activations. So:

1. **Own activation ranges** (:class:`Result`, written into the model by
   ``tfgraph.to_tflite_int8(..., ranges=)``): plain min/max of every int8 tensor over the
   calibration set. TFLite's calibrator records, for a convolution whose output an ADD updates in
   place, the ADD's maximum as well (up to 3x the convolution's own range in the last blocks).
2. **Activation equalization** (:func:`equalize`): per-channel factors folded into the weights so
   that channels with small values use more of their tensor's int8 range.
3. **Empirical bias correction** (:func:`bias_correction`, via :func:`sequential`): layer by layer,
   the mean error of each output channel of the simulated int8 network (weights rounded, every
   activation rounded on its grid, earlier layers already corrected) against the float network on
   the calibration chips is taken out of that channel's bias; the fully-connected layer (no bias in
   dlib) gets one.

Kernels are handed to the converter already on the int8 grid (``q * s`` with ``max |q| = 127`` in every
output channel, so its own per-channel scale is ``s`` again and its rounding returns ``q``); biases are
real numbers (stored as int32 at the accumulator scale). :func:`verify` reads the written model back
and checks every weight and every activation grid against what was meant. Tried and not kept
(models/README.md): GPTQ-style rounding of the weights (mean error -3 %, no better worst case), a
least-squares refit of the fully-connected layer (overfits), equalization with headroom 2 or with
every tensor's limit respected (no gain).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from .tfgraph import FoldedConv, FoldedFC

CHUNK = 50


def weight_scale(kernel: np.ndarray) -> np.ndarray:
    """TFLite's per-output-channel weight scale (last axis: HWIO kernels, (in, out) matrices)."""
    flat = np.asarray(kernel, dtype=np.float64).reshape(-1, kernel.shape[-1])
    return np.maximum(np.abs(flat).max(axis=0), 1e-30) / 127.0


def round_to_grid(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Round-to-nearest int8 weights (as TFLite does) and their per-channel scales."""
    s = weight_scale(kernel)
    q = np.clip(np.rint(np.asarray(kernel, dtype=np.float64) / s), -127, 127)
    return q, s


def on_grid(q: np.ndarray, s: np.ndarray) -> np.ndarray:
    """float32 weights that TFLite's per-channel quantizer maps back to exactly ``q`` (needs max|q| = 127)."""
    flat = q.reshape(-1, q.shape[-1])
    if not np.all(np.abs(flat).max(axis=0) == 127):
        raise ValueError("every output channel needs one weight at +-127 to keep its scale")
    w = (q * s).astype(np.float32)
    back = np.clip(np.rint(w.astype(np.float64) / weight_scale(w)), -127, 127)
    if not np.array_equal(back, q):
        raise AssertionError("grid weights do not survive TFLite's per-channel quantization")
    return w


def activation_grid(lo: float, hi: float) -> tuple[float, int]:
    """TFLite's asymmetric int8 (scale, zero point) for a calibrated [lo, hi] (range widened to hold 0)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / 255.0
    if scale == 0:
        return 1.0, 0
    zp = -128.0 - lo / scale
    return scale, int(np.clip(np.rint(zp), -128, 127))


def fake_quant(x: np.ndarray, grid: tuple[float, int]) -> np.ndarray:
    scale, zp = grid
    q = np.clip(np.rint(x / scale) + zp, -128, 127)
    return ((q - zp) * scale).astype(np.float32)


# --------------------------------------------------------------------------------------------
# The network as a list of simulation ops (relu fused into the op before it, as TFLite does).


@dataclass
class Op:
    kind: str  # conv, fc, max_pool, avg_pool, mean, tag, skip, add
    step: int  # index into tfgraph.fold's steps
    payload: object = None
    relu: bool = False
    point: bool = False  # an int8 tensor with its own calibrated range is written here
    same_as_input: bool = False  # int8 output on the input's grid (average pooling)


def ops_of(steps: list[tuple[str, object]]) -> list[Op]:
    ops: list[Op] = []
    k = 0
    while k < len(steps):
        kind, payload = steps[k]
        relu = k + 1 < len(steps) and steps[k + 1][0] == "relu"
        if kind in ("conv", "fc"):
            ops.append(Op(kind, k, payload, relu=relu, point=True))
        elif kind == "add_prev":
            ops.append(Op("add", k, payload, relu=relu, point=True))
        elif kind == "max_pool":
            ops.append(Op("max_pool", k, payload))
        elif kind == "avg_pool":
            if payload.size == 0:
                ops.append(Op("mean", k, payload, point=True))
            else:
                ops.append(Op("avg_pool", k, payload, same_as_input=True))
        elif kind in ("tag", "skip"):
            ops.append(Op(kind, k, payload))
        elif kind == "relu":
            raise ValueError(f"step {k}: relu after {steps[k - 1][0]} cannot be fused")
        else:
            raise ValueError(f"step {k}: unknown kind {kind}")
        k += 2 if relu else 1
    return ops


def _pad_add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    shape = tuple(max(i, j) for i, j in zip(a.shape[1:], b.shape[1:]))
    out = np.zeros((a.shape[0], *shape), dtype=np.float32)
    out[(slice(None), *(slice(0, d) for d in a.shape[1:]))] += a
    out[(slice(None), *(slice(0, d) for d in b.shape[1:]))] += b
    return out


def apply(op: Op, x: np.ndarray, params: object = None) -> np.ndarray:
    """One op on a batch (NHWC float32), without activation rounding; ``params`` overrides the weights."""
    import tensorflow as tf

    if op.kind == "conv":
        c: FoldedConv = params or op.payload  # type: ignore[assignment]
        outs = []
        for i in range(0, len(x), CHUNK):
            y = tf.nn.conv2d(x[i : i + CHUNK], c.kernel, strides=c.stride, padding=c.padding)
            outs.append(tf.nn.bias_add(y, c.bias).numpy())
        y = np.concatenate(outs)
    elif op.kind == "fc":
        f = params or op.payload
        w, b = (f.weights, f.bias) if isinstance(f, FoldedFC) else (f, None)
        y = (x.reshape(len(x), -1).astype(np.float64) @ w.astype(np.float64)).astype(np.float32)
        if b is not None:
            y = y + b.astype(np.float32)
    elif op.kind == "max_pool":
        y = np.concatenate([tf.nn.max_pool2d(x[i : i + CHUNK], op.payload.size, op.payload.stride, "VALID").numpy()
                            for i in range(0, len(x), CHUNK)])
    elif op.kind == "avg_pool":
        y = np.concatenate([tf.nn.avg_pool2d(x[i : i + CHUNK], op.payload.size, op.payload.stride, "VALID").numpy()
                            for i in range(0, len(x), CHUNK)])
    elif op.kind == "mean":
        y = x.mean(axis=(1, 2), dtype=np.float64).astype(np.float32)
    else:  # pragma: no cover
        raise AssertionError(op.kind)
    return np.maximum(y, 0) if op.relu else y


Refine = Callable[[int, Op, np.ndarray, np.ndarray, np.ndarray], object]


@dataclass
class Result:
    params: dict[int, object]  # step -> FoldedConv / FoldedFC handed to the converter
    ranges: dict[int, tuple[float, float]]  # step -> calibrated activation range (float stream min/max)
    shapes: dict[int, tuple[int, ...]]  # step -> output shape without the batch dimension

    @property
    def grids(self) -> dict[int, tuple[float, int]]:
        return {k: activation_grid(*r) for k, r in self.ranges.items()}

    def tflite_ranges(self, steps: list[tuple[str, object]]) -> dict[str, list[tuple[tuple[int, ...], float, float]]]:
        """The ranges per TFLite op type, in graph order: what tfgraph.to_tflite_int8 writes into the model."""
        names = {"conv": "CONV_2D", "add": "ADD", "mean": "MEAN", "fc": "FULLY_CONNECTED"}
        out: dict[str, list[tuple[tuple[int, ...], float, float]]] = {v: [] for v in names.values()}
        for op in ops_of(steps):
            if op.point:
                out[names[op.kind]].append((self.shapes[op.step], *self.ranges[op.step]))
        return out


def sequential(steps: list[tuple[str, object]], chips: np.ndarray, refine: Refine | None = None,
               log: Callable[[str], None] | None = None) -> Result:
    """Walk the network over ``chips`` with the float and the simulated-int8 stream side by side.

    ``refine(step, op, x_float, x_int8, y_float)`` gets a conv/fc op, both streams' inputs and the float
    stream's output before the activation (the target) and returns the op's new params (grid weights).
    Without it weights are rounded to the nearest grid point (TFLite's default).
    """
    ops = ops_of(steps)
    xf = np.asarray(chips, dtype=np.float32)
    xq = xf.copy()  # int8 input at scale 1: raw pixels are exact
    grid: tuple[float, int] = (1.0, -128)  # the int8 grid of the current tensor
    tags: dict[int, tuple[np.ndarray, np.ndarray, tuple[float, int]]] = {}
    params: dict[int, object] = {}
    ranges: dict[int, tuple[float, float]] = {}
    shapes: dict[int, tuple[int, ...]] = {}
    for op in ops:
        if op.kind == "tag":
            tags[op.payload] = (xf, xq, grid)
            continue
        if op.kind == "skip":
            xf, xq, grid = tags[op.payload]
            continue
        if op.kind == "add":
            yf, yq = _pad_add(xf, tags[op.payload][0]), _pad_add(xq, tags[op.payload][1])
            if op.relu:
                yf, yq = np.maximum(yf, 0), np.maximum(yq, 0)
        elif op.kind in ("conv", "fc"):
            target = apply(replace(op, relu=False), xf)
            p = refine(op.step, op, xf, xq, target) if refine is not None else default_params(op)
            params[op.step] = p
            yf = np.maximum(target, 0) if op.relu else target
            yq = apply(op, xq, p)
        else:
            yf, yq = apply(op, xf), apply(op, xq)
        if op.point:
            ranges[op.step] = (float(yf.min()), float(yf.max()))
            shapes[op.step] = tuple(yf.shape[1:])
            grid = activation_grid(*ranges[op.step])
            yq = fake_quant(yq, grid)
        elif op.same_as_input:
            yq = fake_quant(yq, grid)
        xf, xq = yf, yq
        if log and op.kind in ("conv", "fc", "add"):
            err = float(np.mean((xq - xf) ** 2) / np.mean(xf**2))
            log(f"  step {op.step:3d} {op.kind:4s} {tuple(xf.shape[1:])!s:16s} relative MSE {err:.3e}")
    return Result(params=params, ranges=ranges, shapes=shapes)


def default_params(op: Op) -> object:
    if op.kind == "conv":
        c: FoldedConv = op.payload  # type: ignore[assignment]
        q, s = round_to_grid(c.kernel)
        return replace(c, kernel=on_grid(q, s))
    w = op.payload.weights if isinstance(op.payload, FoldedFC) else op.payload
    q, s = round_to_grid(w)
    return FoldedFC(on_grid(q, s), None)


def simulate(steps: list[tuple[str, object]], result: Result, chips: np.ndarray) -> np.ndarray:
    """The int8 network's descriptors as the simulation sees them (params and grids from ``result``)."""
    ops = ops_of(steps)
    grids = result.grids
    outs = []
    for i in range(0, len(chips), 4 * CHUNK):
        x = np.asarray(chips[i : i + 4 * CHUNK], dtype=np.float32)
        tags: dict[int, tuple[np.ndarray, tuple[float, int]]] = {}
        grid = (1.0, -128)
        for op in ops:
            if op.kind == "tag":
                tags[op.payload] = (x, grid)
                continue
            if op.kind == "skip":
                x, grid = tags[op.payload]
                continue
            if op.kind == "add":
                y = _pad_add(x, tags[op.payload][0])
                y = np.maximum(y, 0) if op.relu else y
            else:
                y = apply(op, x, result.params.get(op.step))
            if op.point:
                grid = grids[op.step]
                y = fake_quant(y, grid)
            elif op.same_as_input:
                y = fake_quant(y, grid)
            x = y
        outs.append(x)
    return np.concatenate(outs)


def with_params(steps: list[tuple[str, object]], params: dict[int, object]) -> list[tuple[str, object]]:
    """``steps`` with the refined conv/fc params swapped in (for tfgraph.build)."""
    return [(kind, params.get(k, payload)) for k, (kind, payload) in enumerate(steps)]


# --------------------------------------------------------------------------------------------
# Activation equalization: per-channel scales folded into the weights.


def channel_ranges(steps: list[tuple[str, object]], chips: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per-channel (min, max) of every int8 activation tensor of the float network over ``chips``."""
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for i in range(0, len(chips), 4 * CHUNK):
        x = np.asarray(chips[i : i + 4 * CHUNK], dtype=np.float32)
        tags: dict[int, np.ndarray] = {}
        for op in ops_of(steps):
            if op.kind == "tag":
                tags[op.payload] = x
                continue
            if op.kind == "skip":
                x = tags[op.payload]
                continue
            if op.kind == "add":
                y = _pad_add(x, tags[op.payload])
                y = np.maximum(y, 0) if op.relu else y
            else:
                y = apply(op, x)
            if op.point:
                f = y.reshape(-1, y.shape[-1])
                lo, hi = f.min(axis=0), f.max(axis=0)
                if op.step in out:
                    lo, hi = np.minimum(lo, out[op.step][0]), np.maximum(hi, out[op.step][1])
                out[op.step] = (lo, hi)
            x = y
    return out


def _limit(lo: np.ndarray, hi: np.ndarray, headroom: float) -> np.ndarray:
    """Largest per-channel factor that keeps every channel ``headroom`` times inside the tensor's range."""
    t_lo, t_hi = min(float(lo.min()), 0.0), max(float(hi.max()), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        up = np.where(hi > 0, t_hi / (headroom * hi), np.inf)
        down = np.where(lo < 0, t_lo / (headroom * lo), np.inf)
    return np.minimum(up, down)


def equalize(steps: list[tuple[str, object]], ranges: dict[int, tuple[np.ndarray, np.ndarray]],
             headroom: float = 1.5, quantile: float = 0.75,
             cap: float = 8.0) -> tuple[list[tuple[str, object]], dict[str, np.ndarray]]:
    """Scale activation channels up into their tensor's int8 range; the network computes the same function.

    Every int8 activation tensor has one scale for all its channels, set by its largest channel, so
    channels with small values get few int8 levels. A positive per-channel factor commutes with relu,
    pooling, zero padding and the mean, so it can be folded into the weights: multiplied into the
    output channels of the convolution that writes a tensor and divided out of the input channels
    of the layers that read it.

    - Inside each block (the relu after the first convolution) the factors are free, one per channel.
    - The residual stream (stem output, the second convolutions, the adds, the mean) is carried from
      stage to stage by the skip connections (dlib zero-pads the skip's channels), so channel ``c``
      has one factor ``D[c]`` in every tensor of the stream where it exists (4 stages: 32, 64, 128,
      256 channels); the fully-connected layer divides it out.

    For one tensor, a channel's limit is the largest factor that keeps it ``headroom`` times inside
    the tensor's calibrated range (the channels that set the range: 1). Inside a block the factor is
    that limit. A residual channel belongs to up to 30 tensors and some tensor nearly always has it
    near its range, so the minimum of its limits is 1 for most channels; the factor used is the
    ``quantile`` of its limits over the residual tensors it belongs to. The tensors it exceeds then
    get a wider range (all ranges are calibrated afterwards, on the equalized network). Factors are
    clipped to [1, cap].
    """
    ops = ops_of(steps)
    width = max(op.payload.kernel.shape[-1] for op in ops if op.kind == "conv")
    limits = []
    intra: dict[int, np.ndarray] = {}
    for op in ops:
        if not op.point or op.kind == "fc":
            continue
        lo, hi = ranges[op.step]
        lim = _limit(lo, hi, headroom)
        if op.kind == "conv" and op.relu and op.step != 0:
            intra[op.step] = np.clip(lim, 1.0, cap)
        else:  # the residual stream: stem, second convolutions, adds, mean
            row = np.full(width, np.nan)
            row[: len(lim)] = lim
            limits.append(row)
    d = np.clip(np.nan_to_num(np.nanquantile(np.asarray(limits), quantile, axis=0), nan=1.0), 1.0, cap)

    new = list(steps)
    scale = np.ones(3)  # the current tensor's factors (the raw pixels: none)
    tags: dict[int, np.ndarray] = {}
    for op in ops:
        if op.kind == "tag":
            tags[op.payload] = scale
        elif op.kind == "skip":
            scale = tags[op.payload]
        elif op.kind == "add":
            other = tags[op.payload]
            n = min(len(scale), len(other))
            if not np.array_equal(scale[:n], other[:n]):
                raise AssertionError(f"step {op.step}: the two inputs of an add are scaled differently")
            scale = scale if len(scale) >= len(other) else other
        elif op.kind == "conv":
            c: FoldedConv = op.payload  # type: ignore[assignment]
            n_out = c.kernel.shape[-1]
            out = intra[op.step] if op.step in intra else d[:n_out]
            k = c.kernel.astype(np.float64) * out[None, None, None, :] / scale[None, None, :, None]
            new[op.step] = ("conv", replace(c, kernel=k.astype(np.float32),
                                            bias=(c.bias.astype(np.float64) * out).astype(np.float32)))
            scale = out
        elif op.kind == "fc":
            f = op.payload if isinstance(op.payload, FoldedFC) else FoldedFC(op.payload)
            w = f.weights.astype(np.float64) / scale[:, None]
            new[op.step] = ("fc", replace(f, weights=w.astype(np.float32)))
            scale = np.ones(w.shape[1])
    return new, {"residual": d, **{f"block_{k}": v for k, v in intra.items()}}


# --------------------------------------------------------------------------------------------
# The pipeline and the check of what the converter wrote.


def bias_correction(step: int, op: Op, xf: np.ndarray, xq: np.ndarray, target: np.ndarray) -> object:
    """A :data:`Refine`: grid weights, and the bias less the mean error of each output channel."""
    p = default_params(op)
    y = apply(replace(op, relu=False), xq, p)
    err = (y.astype(np.float64) - target.astype(np.float64)).reshape(-1, y.shape[-1]).mean(axis=0)
    bias = p.bias.astype(np.float64) if p.bias is not None else np.zeros_like(err)
    return replace(p, bias=(bias - err).astype(np.float32))


def prepare(steps: list[tuple[str, object]], chips: np.ndarray,
            log: Callable[[str], None] | None = None) -> tuple[list[tuple[str, object]], Result]:
    """Equalize, then bias-correct layer by layer on ``chips``: the steps and ranges to convert.

    Returns the equalized steps and the :class:`Result` whose ``params`` replace their weights
    (``with_params``) and whose ranges go into the model (``Result.tflite_ranges``).
    """
    equalized, factors = equalize(steps, channel_ranges(steps, chips))
    if log:
        d = factors["residual"]
        inner = np.concatenate([v for k, v in factors.items() if k != "residual"])
        log(f"int8: equalization factors, residual stream median {np.median(d):.2f} (max {d.max():.2f}), "
            f"inside the blocks median {np.median(inner):.2f} (max {inner.max():.2f})")
    return equalized, sequential(equalized, chips, refine=bias_correction)


def verify(model: bytes, steps: list[tuple[str, object]], result: Result) -> str:
    """Check the int8 model holds exactly the intended weights, biases and activation grids."""
    from tensorflow.lite.tools import flatbuffer_utils as fu

    m = fu.convert_bytearray_to_object(bytearray(model))
    graph = m.subgraphs[0]

    def array(index: int, dtype: type) -> np.ndarray:
        t = graph.tensors[index]
        return np.frombuffer(bytes(m.buffers[t.buffer].data), dtype=dtype).reshape(t.shape)

    grids = result.grids
    expected = [op for op in ops_of(steps) if op.point]
    names = {"conv": "CONV_2D", "add": "ADD", "mean": "MEAN", "fc": "FULLY_CONNECTED"}
    written = [op for op in graph.operators if fu.opcode_to_name(m, op.opcodeIndex) in names.values()]
    if [names[op.kind] for op in expected] != [fu.opcode_to_name(m, o.opcodeIndex) for o in written]:
        raise AssertionError("the int8 model's layers are not the network's")
    worst_bias = 0.0
    for op, w in zip(expected, written):
        q = graph.tensors[w.outputs[0]].quantization
        scale, zp = grids[op.step]
        if not (np.isclose(q.scale[0], scale, rtol=1e-6, atol=0) and int(q.zeroPoint[0]) == zp):
            raise AssertionError(f"step {op.step}: activation grid {q.scale[0]}, {q.zeroPoint[0]}; meant {scale}, {zp}")
        if op.kind not in ("conv", "fc"):
            continue
        p = result.params[op.step]
        kernel = p.kernel if op.kind == "conv" else p.weights
        want, s = round_to_grid(kernel)
        got = array(w.inputs[1], np.int8).astype(np.float64)
        got = got.transpose(1, 2, 3, 0) if op.kind == "conv" else got.T
        wq = graph.tensors[w.inputs[1]].quantization
        if not np.array_equal(got, want) or not np.allclose(wq.scale, s, rtol=1e-6, atol=0):
            raise AssertionError(f"step {op.step}: the int8 weights are not the grid weights handed over")
        if p.bias is not None:
            bq = graph.tensors[w.inputs[2]].quantization
            b = array(w.inputs[2], np.int32) * np.asarray(bq.scale, dtype=np.float64)
            step_size = np.asarray(bq.scale, dtype=np.float64)
            worst_bias = max(worst_bias, float(np.max(np.abs(b - p.bias) / step_size)))
    if worst_bias > 1.0:  # rounding (0.5) plus float32 scale arithmetic on values up to ~1e6 steps
        raise AssertionError(f"a bias is {worst_bias:.2f} int32 steps from the intended value")
    return (f"{sum(op.kind in ('conv', 'fc') for op in expected)} weight tensors and biases, "
            f"{len(expected)} activation grids as intended")
