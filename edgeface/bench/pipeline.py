"""``edgeface bench pipeline``: per-stage latency (decode, detect, quality, align, embed) by threads.

Each stage is timed on the same images, one face per image (the LFW face), so the figures add up to
the cost of one face through the unit. faces/s is 1000 / mean total per face on one worker.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config
from ..evaluation.embeddings import centre_face
from ..vision.engine import Engine
from ..vision.imageio import load_image
from .report import current_rss_mb, percentiles, rss_mb

STAGES = ("decode", "detect", "quality", "align", "embed")


def run(config: Config, paths: list[Path], threads: Iterable[int], samples: int = 200) -> dict[str, Any]:
    chosen = random.Random(0).sample(paths, min(samples, len(paths)))
    out: dict[str, Any] = {
        "images": len(chosen),
        "embedder": config.models.embedder,
        "detector": config.models.detector,
        "threads": {},
    }
    for t in threads:
        cfg = dataclasses.replace(config, runtime=dataclasses.replace(config.runtime, num_threads=t))
        engine = Engine(cfg)
        warm = load_image(chosen[0])
        for _ in range(5):
            f = engine.detect(warm)[0]
            engine.embed(engine.align(warm, f))
        times: dict[str, list[float]] = {s: [] for s in STAGES}
        faces = 0
        for p in chosen:
            t0 = time.perf_counter()
            image = load_image(p, cfg.image)
            t1 = time.perf_counter()
            face = centre_face(engine.detect(image), image.shape)
            t2 = time.perf_counter()
            if face is None:
                continue
            engine.assess(image, face)
            t3 = time.perf_counter()
            chip = engine.align(image, face)
            t4 = time.perf_counter()
            engine.embed(chip)
            t5 = time.perf_counter()
            faces += 1
            for s, a, b in zip(STAGES, (t0, t1, t2, t3, t4), (t1, t2, t3, t4, t5), strict=True):
                times[s].append((b - a) * 1000)
        total = np.sum([times[s] for s in STAGES], axis=0)
        out["threads"][str(t)] = {
            **{s: percentiles(times[s]) for s in STAGES},
            "total": percentiles(list(total)),
            "faces": faces,
            "faces_per_s": round(1000 / float(np.mean(total)), 1),
            "rss_mb": current_rss_mb(),
        }
    out["peak_rss_mb"] = rss_mb()
    return out
