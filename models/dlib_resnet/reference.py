"""A plain NumPy forward pass with dlib's own semantics: the reference the TF graph is checked against.

Deliberately unoptimised and unfolded: NCHW tensors, input normalisation, convolution, affine and
pooling as separate steps, float64 throughout, and dlib's ``add_prev`` rule for unequal shapes (the
result takes the larger size in every dimension; the smaller input counts as zero where it has no
values). It shares nothing with :mod:`.tfgraph` except the parsed weights.
"""

from __future__ import annotations

import numpy as np

from .network import Layer, Network


def _conv(x: np.ndarray, layer: Layer) -> np.ndarray:
    """Cross-correlation with zero padding (dlib's convention), via im2col."""
    w = layer.weights.astype(np.float64)
    kh, kw = w.shape[2:]
    p, s = layer.padding, layer.stride
    x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    n, c, h, wd = x.shape
    oh, ow = (h - kh) // s + 1, (wd - kw) // s + 1
    cols = np.empty((n, c, kh, kw, oh, ow), dtype=np.float64)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = x[:, :, i : i + s * oh : s, j : j + s * ow : s]
    out = np.einsum("ockl,nckl...->no...", w, cols, optimize=True)
    return out + layer.bias.astype(np.float64)[None, :, None, None]


def _pool(x: np.ndarray, layer: Layer, reduce: str) -> np.ndarray:
    if layer.size == 0:  # avg_pool_everything
        return x.mean(axis=(2, 3), keepdims=True)
    assert layer.padding == 0, "this network pools without padding"
    k, s = layer.size, layer.stride
    h, w = x.shape[2:]
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    windows = np.stack(
        [x[:, :, i : i + s * oh : s, j : j + s * ow : s] for i in range(k) for j in range(k)], axis=0
    )
    return windows.max(axis=0) if reduce == "max" else windows.mean(axis=0)


def add_prev(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """dlib's ``tt::add`` for unequal shapes: max size in every dimension, missing values are zero."""
    shape = tuple(max(i, j) for i, j in zip(a.shape, b.shape))
    out = np.zeros(shape, dtype=np.float64)
    out[tuple(slice(0, d) for d in a.shape)] += a
    out[tuple(slice(0, d) for d in b.shape)] += b
    return out


def forward(net: Network, chips: np.ndarray) -> np.ndarray:
    """Raw 128-d descriptors for uint8 RGB chips (N, 150, 150, 3), as dlib computes them."""
    x = np.asarray(chips, dtype=np.float64).transpose(0, 3, 1, 2)  # NHWC -> NCHW
    x = (x - np.asarray(net.mean_rgb, dtype=np.float64)[None, :, None, None]) / 256.0
    tags: dict[int, np.ndarray] = {}
    for layer in net.layers:
        if layer.kind == "con":
            x = _conv(x, layer)
        elif layer.kind == "affine":
            x = x * layer.gamma[None, :, None, None] + layer.beta[None, :, None, None]
        elif layer.kind == "relu":
            x = np.maximum(x, 0.0)
        elif layer.kind == "max_pool":
            x = _pool(x, layer, "max")
        elif layer.kind == "avg_pool":
            x = _pool(x, layer, "avg")
        elif layer.kind == "tag":
            tags[layer.tag] = x
        elif layer.kind == "skip":
            x = tags[layer.tag]
        elif layer.kind == "add_prev":
            x = add_prev(x, tags[layer.tag])
        elif layer.kind == "fc":
            x = x.reshape(len(x), -1) @ layer.weights.astype(np.float64)
        else:  # pragma: no cover
            raise AssertionError(layer.kind)
    return x
