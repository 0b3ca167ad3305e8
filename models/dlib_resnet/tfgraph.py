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


def build(net: Network) -> Callable:
    """A ``tf.function`` from raw RGB pixels (N, 150, 150, 3) float32 to raw 128-d descriptors."""
    import tensorflow as tf

    steps = fold(net)

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
                x = tf.matmul(tf.reshape(x, [-1, payload.shape[0]]), tf.constant(payload))
            else:  # pragma: no cover
                raise AssertionError(kind)
        return {"descriptor": x}

    return descriptor


def to_tflite_float32(fn: Callable) -> bytes:
    import tensorflow as tf

    cf = fn.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([cf], fn)
    return converter.convert()


def to_tflite_int8(fn: Callable, calibration: Iterable[np.ndarray]) -> bytes:
    """Full-integer int8: per-channel int8 weights, int8 activations, int8 input and output.

    ``calibration`` yields uint8 chips (150, 150, 3); together they must contain the pixel values 0
    and 255 so the input tensor gets scale 1.0 and zero point -128 (raw pixels map exactly).
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
    return converter.convert()
