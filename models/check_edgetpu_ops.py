#!/usr/bin/env python3
"""Which operators of a model the Coral Edge TPU compiler can map, and which would run on the CPU.

Reads each ``.tflite`` file's operators from its flatbuffer (edgeface.vision.runtime.oplist) and checks them
against the Edge TPU compiler's supported-operations list (edgeface.vision.runtime.edgetpu.SUPPORTED, from
Coral's "TensorFlow models on the Edge TPU"). Prints per model: operators by type, how many are on the list,
how many the compiler would map (the supported prefix of the graph) and why the rest stay on the CPU.

    python models/check_edgetpu_ops.py                       # every bundled model
    python models/check_edgetpu_ops.py models/mobilefacenet_v1_int8.tflite --static-out /tmp/mfn_b1.tflite
    python models/check_edgetpu_ops.py --json                # the same as JSON

``--static-out`` writes the model with its dynamic batch fixed at 1 (same weights, same outputs; the Edge
TPU takes static shapes only) and checks that file too: it is the input for ``edgetpu_compiler``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from edgeface.vision.runtime.edgetpu import SOURCE, SUPPORTED, check  # noqa: E402
from edgeface.vision.runtime.oplist import with_static_batch  # noqa: E402


def report(path: Path, data: bytes) -> dict[str, object]:
    r = check(data)
    return {"file": str(path), "sha256": hashlib.sha256(data).hexdigest(), **r.to_dict()}


def show(rep: dict[str, object]) -> None:
    print(f"{rep['file']}  (sha256 {str(rep['sha256'])[:12]})")
    by_op = rep["by_op"]
    assert isinstance(by_op, dict)
    for op, d in by_op.items():
        print(f"  {op:<28} {d['count']:>4}  {'on the list' if d['supported'] else 'NOT on the list'}")
    print(
        f"  operators {rep['operators']}: on the Edge TPU list {rep['listed']}, within its limits {rep['supported']}, "
        f"mapped by the compiler {rep['mapped']}"
    )
    for p in rep["model_problems"]:  # type: ignore[attr-defined]
        print(f"  model: {p}")
    cpu = rep["cpu"]
    assert isinstance(cpu, list)
    if cpu:
        first = cpu[0]
        print(f"  on the CPU: {len(cpu)} operators, from #{first['index']} {first['op']} ({first['why']})")
    print()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", type=Path, help="model files (default: every .tflite in models/)")
    ap.add_argument("--static-out", type=Path, help="write the (single) model with its batch fixed at 1 here")
    ap.add_argument("--json", action="store_true", help="print JSON")
    args = ap.parse_args()
    files = args.models or sorted(HERE.glob("*.tflite"))
    reps = []
    for f in files:
        data = f.read_bytes()
        reps.append(report(f, data))
        if args.static_out:
            if len(files) != 1:
                ap.error("--static-out takes one model")
            static = with_static_batch(data)
            args.static_out.write_bytes(static)
            reps.append(report(args.static_out, static))
    if args.json:
        print(json.dumps({"source": SOURCE, "listed_ops": len(SUPPORTED), "models": reps}, indent=2))
    else:
        print(f"Edge TPU operations: {SOURCE}\n")
        for rep in reps:
            show(rep)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
