"""The network as a TensorFlow function (NHWC) and its conversion to TFLite, float32 and int8.

Differences from dlib that change nothing numerically beyond float rounding:

- the input normalisation ``(pixel - mean) / 256`` is folded into the first convolution (it has no
  padding, so the fold is exact at the borders too): the model takes raw 0..255 RGB pixels;
- every ``affine`` (per-channel gamma, beta) is folded into the convolution before it;
- NCHW becomes NHWC; a 3x3 stride-1 convolution with dlib's padding 1 is TF's "SAME", every
  stride-2 convolution and pooling (dlib's padding 0) is "VALID";
- dlib's ``add_prev`` of unequal shapes is an explicit zero pad at the end of the smaller tensor
  (channels, and rows/columns where the stride-2 branch is smaller than the pooled skip: 3x3 vs
  4x4 and 1x1 vs 2x2 in the 256-wide blocks), then an add.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from .network import INPUT_SIZE, Network


@dataclass
class FoldedConv:
    kernel: np.ndarray  # HWIO, float32
    bias: np.ndarray
    stride: int
    padding: str  # "SAME" or "VALID"


@dataclass
class FoldedFC:
    """The fully-connected layer; dlib's has no bias, the int8 refinement may give it one."""

    weights: np.ndarray  # (in, out), float32
    bias: np.ndarray | None = None


def fold(net: Network) -> list[tuple[str, object]]:
    """The layer list with input normalisation and affines folded into the convolutions.

    Returns ``(kind, payload)`` steps: ``("conv", FoldedConv)``, ``("relu", None)``,
    ``("max_pool"|"avg_pool", Layer)``, ``("tag"|"skip"|"add_prev", tag)``, ``("fc", weights)``.
    """
    steps: list[tuple[str, object]] = []
    layers = net.layers
    first = True
    i = 0
    while i < len(layers):
        layer = layers[i]
        if layer.kind == "con":
            w = layer.weights.astype(np.float64)  # (out, in, kh, kw)
            b = layer.bias.astype(np.float64)
            if first:  # (pixel - mean) / 256, exact because this conv has no padding
                assert layer.padding == 0
                mean = np.asarray(net.mean_rgb, dtype=np.float64)
                b = b - np.einsum("oikl,i->o", w, mean) / 256.0
                w = w / 256.0
                first = False
            if i + 1 < len(layers) and layers[i + 1].kind == "affine":
                g = layers[i + 1].gamma.astype(np.float64)
                w = w * g[:, None, None, None]
                b = b * g + layers[i + 1].beta.astype(np.float64)
                i += 1
            if layer.padding not in (0, layer.size // 2) or (layer.padding and layer.stride != 1):
                raise ValueError(f"padding {layer.padding} with stride {layer.stride} has no TF equivalent here")
            steps.append((
                "conv",
                FoldedConv(
                    kernel=w.transpose(2, 3, 1, 0).astype(np.float32),
                    bias=b.astype(np.float32),
                    stride=layer.stride,
                    padding="SAME" if layer.padding else "VALID",
                ),
            ))
        elif layer.kind == "affine":
            raise ValueError("an affine layer that does not follow a convolution cannot be folded")
        elif layer.kind in ("tag", "skip", "add_prev"):
            steps.append((layer.kind, layer.tag))
        elif layer.kind == "fc":
            steps.append(("fc", layer.weights.astype(np.float32)))
        elif layer.kind in ("relu",):
            steps.append(("relu", None))
        else:
            steps.append((layer.kind, layer))
        i += 1
    return steps


def _pad_to(tf, x, shape: tuple[int, int, int]):
    """Zero-pad NHWC ``x`` at the end of H, W and C up to ``shape`` (dlib's add of unequal sizes)."""
    have = x.shape[1:]
    pads = [[0, 0]] + [[0, int(want) - int(h)] for h, want in zip(have, shape)]
    if all(p[1] == 0 for p in pads):
        return x
    return tf.pad(x, pads)


def build(net: Network, steps: list[tuple[str, object]] | None = None) -> Callable:
    """A ``tf.function`` from raw RGB pixels (N, 150, 150, 3) float32 to raw 128-d descriptors.

    ``steps`` (default ``fold(net)``) may carry other weights for the same layers (dlib_resnet.ptq).
    """
    import tensorflow as tf

    steps = fold(net) if steps is None else steps

    @tf.function(
        input_signature=[tf.TensorSpec([None, INPUT_SIZE, INPUT_SIZE, 3], tf.float32, name="pixels")],
        jit_compile=False,
    )
    def descriptor(pixels):
        x = pixels
        tags = {}
        for kind, payload in steps:
            if kind == "conv":
                c: FoldedConv = payload  # type: ignore[assignment]
                x = tf.nn.conv2d(x, tf.constant(c.kernel), strides=c.stride, padding=c.padding)
                x = tf.nn.bias_add(x, tf.constant(c.bias))
            elif kind == "relu":
                x = tf.nn.relu(x)
            elif kind == "max_pool":
                x = tf.nn.max_pool2d(x, payload.size, payload.stride, "VALID")
            elif kind == "avg_pool":
                if payload.size == 0:
                    x = tf.reduce_mean(x, axis=[1, 2])
                else:
                    x = tf.nn.avg_pool2d(x, payload.size, payload.stride, "VALID")
            elif kind == "tag":
                tags[payload] = x
            elif kind == "skip":
                x = tags[payload]
            elif kind == "add_prev":
                y = tags[payload]
                shape = tuple(max(int(a), int(b)) for a, b in zip(x.shape[1:], y.shape[1:]))
                x = _pad_to(tf, x, shape) + _pad_to(tf, y, shape)
            elif kind == "fc":
                fc = payload if isinstance(payload, FoldedFC) else FoldedFC(payload)
                x = tf.matmul(tf.reshape(x, [-1, fc.weights.shape[0]]), tf.constant(fc.weights))
                if fc.bias is not None:
                    x = tf.nn.bias_add(x, tf.constant(fc.bias))
            else:  # pragma: no cover
                raise AssertionError(kind)
        return {"descriptor": x}

    return descriptor


def to_tflite_float32(fn: Callable) -> bytes:
    import tensorflow as tf

    cf = fn.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([cf], fn)
    return converter.convert()


def to_tflite_int8(fn: Callable, calibration: Iterable[np.ndarray],
                   ranges: dict[str, list[tuple[tuple[int, ...], float, float]]] | None = None) -> bytes:
    """Full-integer int8: per-channel int8 weights, int8 activations, int8 input and output.

    ``calibration`` yields uint8 chips (150, 150, 3); together they must contain the pixel values 0
    and 255 so the input tensor gets scale 1.0 and zero point -128 (raw pixels map exactly).

    With ``ranges`` (per op type, in graph order: output shape, min, max; dlib_resnet.ptq) the
    calibrator's activation ranges of the CONV_2D, ADD, MEAN and FULLY_CONNECTED outputs are replaced
    by these before quantizing, and pooling, padding and reshaping outputs take their input's range.
    """
    import tensorflow as tf

    chips = [np.asarray(c, dtype=np.float32)[None] for c in calibration]

    def representative():
        for chip in chips:
            yield [chip]

    cf = fn.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([cf], fn)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    if ranges is None:
        return converter.convert()
    from tensorflow.lite.python.convert import mlir_quantize

    # The same two steps converter.convert() takes (calibrate, then the MLIR quantizer), with the
    # ranges replaced in between; without replacements this gives a functionally identical model.
    converter._experimental_calibrate_only = True  # TF's own switch for exactly this
    calibrated = set_ranges(converter.convert(), ranges)
    return mlir_quantize(calibrated, False, input_data_type=tf.int8, output_data_type=tf.int8)


SAME_RANGE_OPS = ("MAX_POOL_2D", "AVERAGE_POOL_2D", "PAD", "RESHAPE")


def set_ranges(calibrated: bytes, ranges: dict[str, list[tuple[tuple[int, ...], float, float]]]) -> bytes:
    """Write activation ranges into a calibrated (float, with min/max statistics) TFLite model.

    Why: TFLite's calibrator reads each tensor after every op, and where an ADD works in place on
    its input's buffer (the identity blocks), the ADD's result is recorded as that input's range too:
    the convolution before the add gets max(conv, add) instead of its own maximum (up to 3x wider in
    the deep blocks), which costs int8 resolution for nothing.
    """
    from tensorflow.lite.tools import flatbuffer_utils as fu

    model = fu.convert_bytearray_to_object(bytearray(calibrated))
    graph = model.subgraphs[0]
    queues = {k: list(v) for k, v in ranges.items()}
    for op in graph.operators:
        name = fu.opcode_to_name(model, op.opcodeIndex)
        out = graph.tensors[op.outputs[0]]
        if name in queues:
            if not queues[name]:
                raise ValueError(f"more {name} ops in the model than ranges")
            shape, lo, hi = queues[name].pop(0)
            if tuple(int(d) for d in out.shape[1:]) != tuple(shape):
                raise ValueError(f"{name} output {out.name!r} has shape {out.shape}, the ranges say {shape}")
            src_min, src_max = np.float32(lo), np.float32(hi)
        elif name in SAME_RANGE_OPS:
            q = graph.tensors[op.inputs[0]].quantization
            src_min, src_max = q.min[0], q.max[0]
        else:
            raise ValueError(f"no range rule for {name}")
        out.quantization.min = np.asarray([src_min], dtype=np.float32)
        out.quantization.max = np.asarray([src_max], dtype=np.float32)
    left = {k: len(v) for k, v in queues.items() if v}
    if left:
        raise ValueError(f"ranges left over (fewer ops in the model): {left}")
    return bytes(fu.convert_object_to_bytearray(model))
