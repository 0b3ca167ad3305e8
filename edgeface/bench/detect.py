"""``edgeface bench detect``: detection recall on LFW, upright and rotated, and latency by threads.

An image counts as found when a face box contains the image centre (LFW centres the labelled face),
and as correctly oriented when the detector also turned it back upright (what alignment relies on).
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..config import Config
from ..evaluation import lfw
from ..vision.cards import find_card
from ..vision.geometry import rotate_image
from ..vision.imageio import load_image
from ..vision.models.blazeface import BlazeFaceDetector
from .report import percentiles, rss_mb


def _detector(config: Config, threads: int) -> BlazeFaceDetector:
    runtime = dataclasses.replace(config.runtime, num_threads=threads)
    card = find_card(config.models.detector, config.models.dir, task="detector")
    return BlazeFaceDetector(card, runtime, config.detect, verify=config.models.verify_sha256)


def recall(
    config: Config,
    paths: list[Path],
    rotations: Iterable[int] = (0, 90, 180, 270),
    wrap: Callable[[list[Path]], Any] = lambda x: x,
) -> dict[str, Any]:
    det = _detector(config, config.runtime.num_threads)
    rotations = list(rotations)
    stats: dict[int, dict[str, Any]] = {r: {"found": 0, "oriented": 0, "times": [], "missed": []} for r in rotations}
    for path in wrap(paths):
        image = load_image(path, config.image)
        for r in rotations:
            turned = rotate_image(image, r)
            h, w = turned.shape[:2]
            t0 = time.perf_counter()
            faces = det.detect(turned)
            stats[r]["times"].append((time.perf_counter() - t0) * 1000)
            centre = [f for f in faces if f.box[0] <= w / 2 <= f.box[2] and f.box[1] <= h / 2 <= f.box[3]]
            if centre:
                stats[r]["found"] += 1
                if (centre[0].rotation + r) % 360 == 0:
                    stats[r]["oriented"] += 1
            else:
                stats[r]["missed"].append(str(path.relative_to(path.parents[2])))
    n = len(paths)
    out = {}
    for r, s in stats.items():
        out[str(r)] = {
            "images": n,
            "found": s["found"],
            "recall": s["found"] / n if n else float("nan"),
            "correctly_oriented": s["oriented"] / n if n else float("nan"),
            "latency_ms": percentiles(s["times"]),
            "missed": s["missed"][:50],
        }
    return out


def latency(config: Config, paths: list[Path], threads: Iterable[int], samples: int = 300) -> dict[str, Any]:
    """Per-image detection latency on upright images, decoding excluded."""
    rng = random.Random(0)
    chosen = rng.sample(paths, min(samples, len(paths)))
    images = [load_image(p, config.image) for p in chosen]
    out: dict[str, Any] = {}
    for t in threads:
        det = _detector(config, t)
        for im in images[:10]:
            det.detect(im)
        times = []
        for im in images:
            t0 = time.perf_counter()
            det.detect(im)
            times.append((time.perf_counter() - t0) * 1000)
        p = percentiles(times)
        out[str(t)] = {**p, "images_per_s": round(1000 / (sum(times) / len(times)), 1)}
    out["peak_rss_mb"] = rss_mb()
    return out


def run(
    config: Config,
    root: Path,
    limit: int | None,
    threads: list[int],
    rotations: list[int],
    wrap: Callable[[list[Path]], Any],
) -> dict[str, Any]:
    paths = lfw.all_images(root)
    if limit:
        paths = random.Random(0).sample(paths, min(limit, len(paths)))
        paths.sort()
    return {
        "detector": config.models.detector,
        "rotation_mode": config.detect.rotation_mode,
        "recall_threads": config.runtime.num_threads,
        "recall": recall(config, paths, rotations, wrap),
        "latency": latency(config, paths, threads),
    }
