"""The upstream files, pinned by SHA-256.

foamliu/MobileFaceNet (Apache-2.0, https://github.com/foamliu/MobileFaceNet) carries an ONNX export of
its MobileFaceNet in ``weights/`` (added in commit 408e13c, 2025-10-30, merged upstream): the graph in
``MobileFaceNet.onnx`` and its weights in ``MobileFaceNet.onnx.data``. Both are below 4 MiB, so a
repository snapshot holds them; ``--source DIR`` points at a folder with the two files, ``--git DIR`` at a
clone (or the snapshot's bare repository) from which they are read at the pinned commit.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

REPOSITORY = "https://github.com/foamliu/MobileFaceNet"
COMMIT = "a6cc9032a659b615f477833e1a70b5e7931bcccc"
GRAPH = "MobileFaceNet.onnx"
WEIGHTS = "MobileFaceNet.onnx.data"
PATHS = {GRAPH: f"weights/{GRAPH}", WEIGHTS: f"weights/{WEIGHTS}"}
SHA256 = {
    GRAPH: "b7120c095d60094f28a4a54ba6a8bf51b297a6273fb40ef6350dfec1f63d9507",
    WEIGHTS: "0b6400e57e9973bed03816c500eb0c2819c623634cf5ea005e6508e95af883f6",
}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def from_git(git_dir: Path, dest: Path, commit: str = COMMIT) -> Path:
    """Write the two files from a clone (or bare repository) at ``commit`` into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for name, path in PATHS.items():
        data = subprocess.run(
            ["git", "-C", str(git_dir), "show", f"{commit}:{path}"], check=True, capture_output=True
        ).stdout
        (dest / name).write_bytes(data)
    return dest


def verify(folder: Path) -> Path:
    """The graph file after checking both files' SHA-256 (the .data file must sit beside the graph)."""
    for name, want in SHA256.items():
        p = folder / name
        if not p.exists():
            raise SystemExit(f"{p} is missing: get it from {REPOSITORY} (weights/{name}, commit {COMMIT[:7]})")
        got = sha256_file(p)
        if got != want:
            raise SystemExit(f"{p}: SHA-256 {got}, expected {want}; this is not the pinned upstream file")
    return folder / GRAPH
