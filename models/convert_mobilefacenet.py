#!/usr/bin/env python3
"""Convert foamliu's Apache-2.0 MobileFaceNet (ONNX export) to TFLite: float32 and full-integer int8.

Reads ``MobileFaceNet.onnx`` + ``MobileFaceNet.onnx.data`` (SHA-256 pinned; mobilefacenet/source.py)
from a folder (``--source``) or a clone/snapshot of foamliu/MobileFaceNet (``--git``), rebuilds the graph
op for op in TensorFlow (checked against ONNX Runtime, the source framework), and writes

    models/mobilefacenet_v1_float32.tflite   float32 in/out
    models/mobilefacenet_v1_int8.tflite      int8 weights (per channel), activations, input (scale 1,
                                             zero point -128) and output

Both take the raw 0..255 RGB pixels of a 112x112 chip aligned by edgeface with the card's template
and return the raw 128-d embedding. The int8 model is calibrated on 500 edgeface-aligned LFW chips
(images not in pairs.txt, ordered by sha256("7:<Person/file>"), the first 500) plus one seeded
augmented copy of each. Fidelity to ONNX Runtime is measured on 1,000 held-out chips of other people
(min / p1 / mean cosine) after an empirical correction of the last layer's bias, and the run stops if the int8 model's mean cosine is below 0.99. Then the
machine-derived fields of both cards are updated, and ``--fixtures DIR`` writes the test fixtures
(chips of the public-domain test photos and ONNX Runtime's embeddings of them).

    nice python models/convert_mobilefacenet.py --git /path/to/MobileFaceNet.git --lfw ../shared/data/lfw \
        --fixtures tests/vision/fixtures/mobilefacenet
    ... --chips /tmp/mfn_chips.npz   # cache the aligned LFW chips (LFW crops: keep them out of the repo)
    ... --out-dir DIR                # write the models elsewhere and leave the cards alone
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

from dlib_resnet import augment, cards  # noqa: E402
from convert_dlib_resnet import tflite_outputs as tflite  # noqa: E402  (the same runner: quantize in, dequantize out)
from dlib_resnet.chips import ordered  # noqa: E402
from mobilefacenet import onnxgraph, source, tfgraph  # noqa: E402

FLOAT_FILE, INT8_FILE = "mobilefacenet_v1_float32.tflite", "mobilefacenet_v1_int8.tflite"
FLOAT_CARD, INT8_CARD = "mobilefacenet-v1-float32.toml", "mobilefacenet-v1-int8.toml"
SEED, CALIBRATION, HELD_OUT = 7, 500, 1000
DEFAULT_LFW = REPO.parent / "shared" / "data" / "lfw"
PHOTOS = ["obama.jpg", "obama2.jpg", "obama3.jpg", "obama_partial_face.jpg", "biden.jpg", "32bit.png"]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def aligned_chip(engine, path: Path) -> np.ndarray | None:
    """The chip edgeface itself makes: detector, face mesh, the card's landmark template."""
    from edgeface.evaluation.embeddings import centre_face

    img = engine.load_image(path)
    face = centre_face(engine.detect(img), img.shape)
    if face is None:
        return None
    return engine.align(img, engine.refine(img, face))


def lfw_chips(lfw_root: Path, cache: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """Calibration chips, then held-out chips of people not in the calibration set."""
    if cache and cache.exists():
        z = np.load(cache)
        return z["calibration"], z["held_out"]
    from edgeface.config import Config
    from edgeface.evaluation import accuracy, lfw
    from edgeface.vision.engine import Engine

    root = lfw.lfw_dir(lfw_root)
    in_pairs = {p for pr in lfw.pairs(root) for p in (pr.a, pr.b)}
    images = root / "images"
    order = ordered([p for p in lfw.all_images(root) if p not in in_pairs], images, SEED)
    engine = Engine(accuracy.with_embedder(Config(), "mobilefacenet-v1-float32"))
    calib: list[np.ndarray] = []
    people: set[str] = set()
    it = iter(order)
    for p in it:
        c = aligned_chip(engine, p)
        if c is not None:
            calib.append(c)
            people.add(p.parent.name)
        if len(calib) == CALIBRATION:
            break
    held: list[np.ndarray] = []
    for p in it:
        if p.parent.name in people:
            continue
        c = aligned_chip(engine, p)
        if c is not None:
            held.append(c)
        if len(held) == HELD_OUT:
            break
    out = np.stack(calib), np.stack(held)
    if cache:
        np.savez(cache, calibration=out[0], held_out=out[1])
    return out


def with_augmented(base: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(SEED)
    extra = [augment.jitter(c, rng) for c in base]
    extra = [augment.mirror(c) if i % 2 else c for i, c in enumerate(extra)]
    return np.concatenate([base, np.stack(extra)])


class Reference:
    """ONNX Runtime on the source file: the fidelity reference."""

    def __init__(self, graph_file: Path) -> None:
        import onnxruntime as ort

        self.sess = ort.InferenceSession(str(graph_file), providers=["CPUExecutionProvider"])
        self.name = self.sess.get_inputs()[0].name

    def __call__(self, chips: np.ndarray) -> np.ndarray:
        x = ((chips.astype(np.float32) / 255.0 - tfgraph.MEAN) / tfgraph.STD).transpose(0, 3, 1, 2)
        return np.concatenate([self.sess.run(None, {self.name: x[i : i + 1].astype(np.float32)})[0]
                               for i in range(len(x))])


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def stats(c: np.ndarray) -> str:
    return f"min {c.min():.5f}  p1 {np.percentile(c, 1):.5f}  mean {c.mean():.5f}"


def write_fixtures(dest: Path, engine_card: str, ref: Reference) -> None:
    """Chips of the public-domain test photos (and seeded variants) with ONNX Runtime's embeddings."""
    import cv2

    from edgeface.config import Config
    from edgeface.evaluation import accuracy
    from edgeface.vision.engine import Engine

    engine = Engine(accuracy.with_embedder(Config(), engine_card))
    dest.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    names, chips = [], []
    for photo in PHOTOS:
        c = aligned_chip(engine, REPO / "tests" / "images" / photo)
        if c is None:
            raise SystemExit(f"no face found in tests/images/{photo}")
        stem = Path(photo).stem
        for tag, v in (("", c), ("_mirror", augment.mirror(c)), ("_jitter", augment.jitter(c, rng))):
            name = f"{stem}{tag}.png"
            cv2.imwrite(str(dest / name), cv2.cvtColor(v, cv2.COLOR_RGB2BGR))
            names.append(name)
            chips.append(cv2.cvtColor(cv2.imread(str(dest / name)), cv2.COLOR_BGR2RGB))  # as re-read
    emb = ref(np.stack(chips))
    (dest / "reference.json").write_text(json.dumps(
        {"source": "ONNX Runtime on foamliu/MobileFaceNet weights/MobileFaceNet.onnx (models/convert_mobilefacenet.py)",
         "embeddings": {n: [round(float(x), 6) for x in e] for n, e in zip(names, emb)}}, indent=1) + "\n")
    log(f"fixtures: {len(names)} chips and reference embeddings in {dest}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--source", type=Path, help="folder holding MobileFaceNet.onnx and MobileFaceNet.onnx.data")
    g.add_argument("--git", type=Path, help="clone (or bare snapshot) of foamliu/MobileFaceNet")
    ap.add_argument("--lfw", type=Path, default=DEFAULT_LFW, help="LFW folder with images/ (calibration)")
    ap.add_argument("--chips", type=Path, help="cache file (.npz) for the aligned LFW chips, outside the repo")
    ap.add_argument("--out-dir", type=Path, default=HERE, help="where to write the models (default: models/)")
    ap.add_argument("--fixtures", type=Path, help="also write the test fixtures into this folder")
    args = ap.parse_args()

    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        folder = source.from_git(args.git, Path(tmp)) if args.git else args.source
        graph_file = source.verify(folder)
        graph = onnxgraph.load(graph_file)
        ref = Reference(graph_file)
        log(f"source: {graph_file} (SHA-256 verified); {len(graph.steps)} ops, {graph.parameters:,} parameters, "
            f"{graph.macs():,} MACs")
        base, held = lfw_chips(args.lfw, args.chips)
        calib = with_augmented(base)
        log(f"chips: {len(base)} calibration (+{len(calib) - len(base)} augmented), {len(held)} held out")

        fn = tfgraph.build(graph)
        want = ref(held)
        got = fn(held[:32].astype(np.float32)).numpy()
        err = float(np.abs(got - want[:32]).max())
        log(f"TensorFlow graph vs ONNX Runtime: max abs difference {err:.2e}")
        if err > 1e-4:
            raise SystemExit("the TensorFlow graph does not match ONNX Runtime")

        f32 = tfgraph.to_tflite_float32(fn)
        out_f32, io_f32 = tflite(f32, held)
        c32 = cosine(out_f32, want)
        log(f"float32: {len(f32):,} bytes, SHA-256 {sha256(f32)}; cosine to ONNX Runtime on held-out: {stats(c32)}")
        i8 = tfgraph.to_tflite_int8(fn, calib)
        # Empirical bias correction of the last layer: the int8 model's mean output error on the
        # calibration samples (against the float graph) is taken out of the final bias, then re-converted.
        shift = (tflite(i8, base)[0] - fn(base.astype(np.float32)).numpy()).mean(axis=0)
        log(f"int8 output bias on the calibration chips: mean |error| {np.abs(shift).mean():.4f}, "
            f"max {np.abs(shift).max():.4f}; corrected in the last layer's bias")
        fn = tfgraph.build(tfgraph.with_output_bias(graph, -shift))
        i8 = tfgraph.to_tflite_int8(fn, calib)
        out_i8, io_i8 = tflite(i8, held)
        c8 = cosine(out_i8, want)
        inp_q, out_q = io_i8["input"]["quantization"], io_i8["output"]["quantization"]
        log(f"int8: {len(i8):,} bytes, SHA-256 {sha256(i8)}; input scale {inp_q[0]} zero point {inp_q[1]}, output "
            f"scale {out_q[0]} zero point {out_q[1]}; cosine to ONNX Runtime on held-out: {stats(c8)}")
        if io_i8["input"]["dtype"] != np.int8 or io_i8["output"]["dtype"] != np.int8 or inp_q != (1.0, -128):
            raise SystemExit("the int8 model must take int8 input (scale 1, zero point -128) and give int8 output")
        if c32.min() < 0.9999 or c8.mean() < 0.99:
            raise SystemExit("a converted model is too far from the source")

        args.out_dir.mkdir(parents=True, exist_ok=True)
        (args.out_dir / FLOAT_FILE).write_bytes(f32)
        (args.out_dir / INT8_FILE).write_bytes(i8)
        log(f"wrote {args.out_dir / FLOAT_FILE} and {args.out_dir / INT8_FILE}")
        if args.out_dir.resolve() == HERE:
            common = {"provenance.converted_with": f"tensorflow {tf.__version__}"}
            cards.update(HERE / FLOAT_CARD, {**common, "sha256": sha256(f32),
                                             "embedding.output": io_f32["output"]["name"]})
            cards.update(HERE / INT8_CARD, {
                **common,
                "sha256": sha256(i8),
                "provenance.calibration": (
                    f"{len(base)} edgeface-aligned LFW chips (images not in pairs.txt ordered by "
                    f"sha256('{SEED}:<Person>/<file>'), the first {len(base)} with a face) plus one seeded "
                    f"augmented copy of each (numpy default_rng({SEED}): rotation/scale/shift + colour, every "
                    f"second mirrored): {len(calib)} samples; TFLite converter min/max ranges"),
                "embedding.output": io_i8["output"]["name"],
                "quantization.input_scale": float(inp_q[0]),
                "quantization.input_zero_point": int(inp_q[1]),
                "quantization.output_scale": float(out_q[0]),
                "quantization.output_zero_point": int(out_q[1]),
            })
            log(f"updated {FLOAT_CARD} and {INT8_CARD}")
        if args.fixtures:
            write_fixtures(args.fixtures, "mobilefacenet-v1-float32", ref)
    return 0


if __name__ == "__main__":
    sys.exit(main())
