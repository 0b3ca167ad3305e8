"""Embeddings of LFW images through the full pipeline (detect -> align -> embed), cached on disk.

The cache lives outside the repository (``$XDG_CACHE_HOME/edgeface``, default ``~/.cache/edgeface``)
and its key covers everything that changes the vectors: embedder file hash, detector, alignment
template, flip fusion. Images where no face is found get a zero vector and ``found = False``; the
benchmarks count them, never hide them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config
from ..vision.engine import Engine
from ..vision.faces import Face
from ..vision.quality import assess


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    d = base / "edgeface"
    d.mkdir(parents=True, exist_ok=True)
    return d


@dataclass(frozen=True)
class LfwEmbeddings:
    paths: list[Path]
    vectors: np.ndarray  # (N, D) float32, L2-normalised; zeros where no face was found
    found: np.ndarray  # (N,) bool
    yaw: np.ndarray  # (N,) float32, estimated yaw of the embedded face (nan if none)

    def index(self) -> dict[Path, int]:
        return {p: i for i, p in enumerate(self.paths)}


def centre_face(faces: list[Face], shape: tuple[int, ...]) -> Face | None:
    """The face LFW labels: the one covering the image centre (best score), else the nearest."""
    if not faces:
        return None
    h, w = shape[:2]
    covering = [f for f in faces if f.box[0] <= w / 2 <= f.box[2] and f.box[1] <= h / 2 <= f.box[3]]
    if covering:
        return max(covering, key=lambda f: f.score)
    return min(faces, key=lambda f: ((f.box[0] + f.box[2]) / 2 - w / 2) ** 2 + ((f.box[1] + f.box[3]) / 2 - h / 2) ** 2)


def _key(engine: Engine, paths: list[Path]) -> str:
    card = engine.embedder_card
    spec = card.embedder
    assert spec is not None
    doc = {
        "embedder": card.sha256,
        "detector": engine.config.models.detector,
        "detect": [engine.config.detect.rotation_mode, list(engine.config.detect.rotations)],
        "template": spec.alignment.template,
        "landmarks": {str(k): v for k, v in spec.alignment.landmark_template.items()},
        "refine": engine.config.align.refine,
        "flip": engine.flip_fusion,
        "paths": hashlib.sha256("\n".join(str(p) for p in paths).encode()).hexdigest(),
        "v": 2,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def lfw_embeddings(
    config: Config,
    paths: list[Path],
    *,
    wrap: Callable[[Iterable[Any]], Iterable[Any]] = lambda x: x,
    use_cache: bool = True,
) -> LfwEmbeddings:
    engine = Engine(config)
    cache = cache_dir() / f"lfw-{config.models.embedder}-{_key(engine, paths)}.npz"
    if use_cache and cache.exists():
        z = np.load(cache)
        return LfwEmbeddings(list(paths), z["vectors"], z["found"], z["yaw"])
    dim = engine.embedder.dim
    vectors = np.zeros((len(paths), dim), np.float32)
    found = np.zeros(len(paths), bool)
    yaw = np.full(len(paths), np.nan, np.float32)
    batch: list[tuple[int, np.ndarray]] = []

    def flush() -> None:
        if batch:
            idx = [i for i, _ in batch]
            vectors[idx] = engine.embed(np.stack([c for _, c in batch]))
            batch.clear()

    for i, path in enumerate(wrap(paths)):
        image = engine.load_image(path)
        face = centre_face(engine.detect(image), image.shape)
        if face is None:
            continue
        found[i] = True
        yaw[i] = assess(image, face, config.quality).yaw
        batch.append((i, engine.align(image, face)))
        if len(batch) >= 16:
            flush()
    flush()
    np.savez(cache, vectors=vectors, found=found, yaw=yaw)
    return LfwEmbeddings(list(paths), vectors, found, yaw)
