"""The layer layout of dlib's face-recognition ResNet and a parser for its ``.dat`` file.

The network is written down here exactly as dlib's ``dnn_face_recognition_ex.cpp`` declares it, as a
flat list of layers from the input outwards with dlib's tag/skip/add_prev wiring kept as is. The
parser walks that list in dlib's serialization order (outer layers' version numbers first, then the
input layer, then each layer's details from the innermost outwards) and checks every shape, stride
and padding against the layout, so a file of a different network fails instead of half-loading.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .serial import FormatError, Reader

EXPECTED_PARAMETERS = 5_614_592
INPUT_SIZE = 150
EMBEDDING_DIM = 128


@dataclass
class Layer:
    """One dlib layer. ``kind``: con, affine, relu, max_pool, avg_pool, add_prev, tag, skip, fc."""

    kind: str
    filters: int = 0  # con / fc outputs
    size: int = 0  # kernel or pooling window (0 = the whole input, avg_pool_everything)
    stride: int = 1
    tag: int = 0  # tag / skip / add_prev id
    weights: np.ndarray | None = field(default=None, repr=False)  # con: (out, in, kh, kw); fc: (in, out)
    bias: np.ndarray | None = field(default=None, repr=False)
    gamma: np.ndarray | None = field(default=None, repr=False)  # affine, per channel
    beta: np.ndarray | None = field(default=None, repr=False)

    @property
    def padding(self) -> int:
        """dlib's default padding: kernel//2 for stride 1, none otherwise (conv and pooling alike)."""
        return self.size // 2 if self.stride == 1 else 0

    @property
    def parameters(self) -> int:
        return sum(a.size for a in (self.weights, self.bias, self.gamma, self.beta) if a is not None)


@dataclass
class Network:
    """The parsed network: input normalisation and the layers from the input outwards."""

    mean_rgb: tuple[float, float, float]
    layers: list[Layer]
    margin: float = 0.0
    dist_thresh: float = 0.0

    @property
    def parameters(self) -> int:
        return sum(layer.parameters for layer in self.layers)


def _block(n: int, stride: int) -> list[Layer]:
    """dlib's ``block``: con3x3(stride) -> affine -> relu -> con3x3 -> affine (input side first)."""
    return [Layer("con", n, 3, stride), Layer("affine"), Layer("relu"), Layer("con", n, 3, 1), Layer("affine")]


def _ares(n: int) -> list[Layer]:
    """``relu<add_prev1<block<tag1<x>>>>``: the identity residual."""
    return [Layer("tag", tag=1), *_block(n, 1), Layer("add_prev", tag=1), Layer("relu")]


def _ares_down(n: int) -> list[Layer]:
    """``relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block_s2<tag1<x>>>>>>>``: the skip is avg-pooled."""
    return [
        Layer("tag", tag=1),
        *_block(n, 2),
        Layer("tag", tag=2),
        Layer("skip", tag=1),
        Layer("avg_pool", size=2, stride=2),
        Layer("add_prev", tag=2),
        Layer("relu"),
    ]


def layout() -> list[Layer]:
    """The network from the input outwards (``anet_type`` in dlib's dnn_face_recognition_ex.cpp)."""
    layers = [Layer("con", 32, 7, 2), Layer("affine"), Layer("relu"), Layer("max_pool", size=3, stride=2)]
    layers += _ares(32) + _ares(32) + _ares(32)  # alevel4
    layers += _ares_down(64) + _ares(64) + _ares(64) + _ares(64)  # alevel3
    layers += _ares_down(128) + _ares(128) + _ares(128)  # alevel2
    layers += _ares_down(256) + _ares(256) + _ares(256)  # alevel1
    layers += _ares_down(256)  # alevel0
    layers += [Layer("avg_pool", size=0, stride=1), Layer("fc", EMBEDDING_DIM)]
    return layers


def _multipliers(r: Reader) -> None:
    for _ in range(4):  # learning-rate and weight-decay multipliers: training-only
        r.float()


def _con(r: Reader, layer: Layer, in_channels: int) -> None:
    r.expect_string("con_4")
    params = r.tensor().ravel()
    n, nr, nc = r.int(), r.int(), r.int()
    sy, sx, py, px = r.int(), r.int(), r.int(), r.int()
    want = (layer.filters, layer.size, layer.size, layer.stride, layer.stride, layer.padding, layer.padding)
    if (n, nr, nc, sy, sx, py, px) != want:
        raise FormatError(f"con layer is {(n, nr, nc, sy, sx, py, px)}, the layout says {want}")
    fshape, bshape = r.alias_tensor(), r.alias_tensor()
    if fshape != (n, in_channels, nr, nc) or bshape != (1, n, 1, 1):
        raise FormatError(f"con layer alias shapes {fshape}, {bshape} do not fit {in_channels} input channels")
    _multipliers(r)
    w_size = n * in_channels * nr * nc
    if params.size != w_size + n:
        raise FormatError(f"con layer has {params.size} parameters, expected {w_size + n}")
    layer.weights = params[:w_size].reshape(fshape).copy()
    layer.bias = params[w_size:].copy()


def _affine(r: Reader, layer: Layer, channels: int) -> None:
    r.expect_string("affine_")
    params = r.tensor().ravel()
    g, b = r.alias_tensor(), r.alias_tensor()
    if g != (1, channels, 1, 1) or b != g or params.size != 2 * channels:
        raise FormatError(f"affine layer shapes {g}, {b}, {params.size} do not fit {channels} channels")
    mode = r.int()
    if mode != 0:  # dlib's layer_mode: CONV_MODE = 0 (per channel), FC_MODE = 1
        raise FormatError(f"affine layer in mode {mode}; this network uses per-channel (CONV_MODE = 0)")
    layer.gamma = params[:channels].copy()
    layer.beta = params[channels:].copy()


def _pool(r: Reader, layer: Layer, version: str) -> None:
    r.expect_string(version)
    nr, nc, sy, sx, py, px = (r.int() for _ in range(6))
    want = (layer.size, layer.size, layer.stride, layer.stride, layer.padding, layer.padding)
    if (nr, nc, sy, sx, py, px) != want:
        raise FormatError(f"{version} layer is {(nr, nc, sy, sx, py, px)}, the layout says {want}")


def _fc(r: Reader, layer: Layer, in_features: int) -> None:
    r.expect_string("fc_2")
    n_out, n_in = r.uint(), r.uint()
    if (n_out, n_in) != (layer.filters, in_features):
        raise FormatError(f"fc layer is {n_in}->{n_out}, expected {in_features}->{layer.filters}")
    params = r.tensor()
    w, b = r.alias_tensor(), r.alias_tensor()
    bias_mode = r.int()
    if bias_mode != 1:  # FC_NO_BIAS = 1
        raise FormatError(f"fc layer bias_mode {bias_mode}; this network's fc has no bias (1)")
    _multipliers(r)
    if w != (n_in, n_out, 1, 1) or params.size != n_in * n_out:
        raise FormatError(f"fc layer alias {w}, {b} and {params.size} parameters do not fit {n_in}x{n_out}")
    layer.weights = params.reshape(n_in, n_out).copy()


def _details(r: Reader, layer: Layer, channels: int) -> int:
    """Read one layer's details; returns the channel count after it."""
    if layer.kind == "con":
        _con(r, layer, channels)
        return layer.filters
    if layer.kind == "affine":
        _affine(r, layer, channels)
    elif layer.kind == "relu":
        r.expect_string("relu_")
    elif layer.kind == "max_pool":
        _pool(r, layer, "max_pool_2")
    elif layer.kind == "avg_pool":
        _pool(r, layer, "avg_pool_2")
    elif layer.kind == "add_prev":
        r.expect_string("add_prev_")
    elif layer.kind == "fc":
        _fc(r, layer, channels)
        return layer.filters
    else:  # pragma: no cover - layout bug
        raise AssertionError(layer.kind)
    return channels


def _add_layer_trailer(r: Reader, version: int) -> None:
    """What dlib's add_layer writes after its details: flags and (empty) training tensors."""
    r.bool()  # this_layer_setup_called
    r.bool()  # gradient_input_is_stale
    r.bool()  # get_output_and_gradient_input_disabled
    r.empty_tensor("x_grad")
    r.empty_tensor("cached_output")
    if version == 2:
        r.empty_tensor("params_grad")
    elif version == 3:  # the add_layer right above the input layer
        r.empty_tensor("grad_final")
        r.uint()  # _sample_expansion_factor


def parse(data: bytes) -> Network:
    """Parse ``dlib_face_recognition_resnet_model_v1.dat``; every byte must be accounted for."""
    r = Reader(data)
    r.expect_int(1, "add_loss_layer version")
    r.expect_string("loss_metric_2")
    margin, dist_thresh = r.float(), r.float()

    layers = layout()
    versions: list[int] = []
    for i, layer in enumerate(reversed(layers)):  # outermost first
        v = r.int()
        if layer.kind in ("tag", "skip"):
            if v != 1:
                raise FormatError(f"add_{layer.kind}_layer version {v}, expected 1")
        elif i == len(layers) - 1:
            if v != 3:
                raise FormatError(f"the add_layer above the input has version {v}, expected 3")
        elif v not in (1, 2):
            raise FormatError(f"add_layer version {v}, expected 1 or 2")
        versions.append(v)
    versions.reverse()  # now input side first, like ``layers``

    r.expect_string("input_rgb_image_sized")
    mean = (r.float(), r.float(), r.float())
    nr, nc = r.uint(), r.uint()
    if (nr, nc) != (INPUT_SIZE, INPUT_SIZE):
        raise FormatError(f"input is {nr}x{nc}, expected {INPUT_SIZE}x{INPUT_SIZE}")

    channels = 3
    tag_channels: dict[int, int] = {}
    for layer, version in zip(layers, versions):
        if layer.kind == "tag":
            tag_channels[layer.tag] = channels
            continue
        if layer.kind == "skip":
            channels = tag_channels[layer.tag]
            continue
        if layer.kind == "add_prev":
            channels = max(channels, tag_channels[layer.tag])
        channels = _details(r, layer, channels)
        _add_layer_trailer(r, version)

    if r.remaining:
        raise FormatError(f"{r.remaining} bytes left over after the network: not the file this parser knows")
    net = Network(mean_rgb=mean, layers=layers, margin=margin, dist_thresh=dist_thresh)
    if net.parameters != EXPECTED_PARAMETERS:
        raise FormatError(f"parsed {net.parameters:,} parameters, expected {EXPECTED_PARAMETERS:,}")
    return net


def load(path: str | Path) -> Network:
    return parse(Path(path).read_bytes())
