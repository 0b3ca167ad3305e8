"""The ONNX steps as a TensorFlow function (NHWC), and its float32 and full-integer int8 TFLite forms.

The function takes the raw RGB pixels (0..255, NHWC) of an aligned 112x112 chip and applies the
network's own input normalisation first, (pixel/255 - mean)/std per channel (ImageNet statistics, as
upstream trained it), so the model file carries it and the card's input is the plain pixel.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from .onnxgraph import Graph

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def build(graph: Graph) -> Callable:
    import tensorflow as tf

    t = graph.tensors
    h, w = graph.input_shape[2], graph.input_shape[3]

    @tf.function(input_signature=[tf.TensorSpec([None, h, w, 3], tf.float32, name="chip")])
    def fn(x):
        vals = {graph.input: (x * (1.0 / 255.0) - MEAN) / STD}
        for s in graph.steps:
            a = vals[s.inputs[0]]
            if s.op == "Conv":
                k = t[s.inputs[1]]  # (out, in/group, kh, kw)
                b = t[s.inputs[2]] if len(s.inputs) > 2 and s.inputs[2] else None
                sh, sw = s.attrs.get("strides", [1, 1])
                p = s.attrs.get("pads", [0, 0, 0, 0])
                group = int(s.attrs.get("group", 1))
                if any(p):
                    a = tf.pad(a, [[0, 0], [p[0], p[2]], [p[1], p[3]], [0, 0]])
                if group == 1:
                    y = tf.nn.conv2d(a, np.transpose(k, (2, 3, 1, 0)), [1, sh, sw, 1], "VALID")
                elif group == k.shape[0] and k.shape[1] == 1:
                    y = tf.nn.depthwise_conv2d(a, np.transpose(k, (2, 3, 0, 1)), [1, sh, sw, 1], "VALID")
                else:
                    raise SystemExit(f"grouped convolution with {group} groups is not depthwise: unsupported")
                vals[s.output] = y if b is None else tf.nn.bias_add(y, b)
            elif s.op == "Clip":
                lo, hi = float(t[s.inputs[1]]), float(t[s.inputs[2]])
                if (lo, hi) != (0.0, 6.0):
                    raise SystemExit(f"Clip({lo}, {hi}) is not ReLU6: unsupported")
                vals[s.output] = tf.nn.relu6(a)
            elif s.op == "Relu":
                vals[s.output] = tf.nn.relu(a)
            elif s.op == "Add":
                vals[s.output] = a + vals[s.inputs[1]]
            elif s.op == "Reshape":
                # (N, C, 1, 1) -> (N, C): the spatial size is 1 here, so NHWC and NCHW flattening agree
                if a.shape[1] != 1 or a.shape[2] != 1:
                    raise SystemExit(f"Reshape of a {a.shape} tensor: only (N, 1, 1, C) -> (N, C) is supported")
                vals[s.output] = tf.reshape(a, [-1, a.shape[-1]])
        return tf.identity(vals[graph.output], name="embedding")

    return fn


def with_output_bias(graph: Graph, delta: np.ndarray) -> Graph:
    """A copy of ``graph`` whose last convolution's bias is shifted by ``delta`` (bias correction)."""
    import copy

    last = [s for s in graph.steps if s.op == "Conv"][-1]
    out = copy.copy(graph)
    out.tensors = dict(graph.tensors)
    out.tensors[last.inputs[2]] = (graph.tensors[last.inputs[2]] + delta).astype(np.float32)
    return out


def to_tflite_float32(fn: Callable) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    return bytes(conv.convert())


def to_tflite_int8(fn: Callable, calibration: Iterable[np.ndarray]) -> bytes:
    """Full-integer int8: weights per channel, activations per tensor, int8 input and output."""
    import tensorflow as tf

    samples = list(calibration)

    def rep():
        for c in samples:
            yield [np.asarray(c, np.float32)[None]]

    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return bytes(conv.convert())
