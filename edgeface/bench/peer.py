"""``edgeface bench peer``: edgeface and face_recognition side by side, on the same LFW images, on one core.

Speed: the whole chain per image (decode, detect, landmarks, align, embed) for both, in alternating
rounds (the side that goes first changes every round, so a busy neighbour or a warming cache hurts
both alike), with the process pinned to one CPU core and every library held to one thread: TFLite
``num_threads = 1``, OpenCV ``setNumThreads(1)``, OMP/OpenBLAS/MKL at 1. Figures are per face found,
the median over rounds, with the per-stage breakdown of each side. Each is given twice: CPU time of
the process (the core's work, steady on a shared machine: the headline) and wall-clock time (what a
user waits on an idle core; on a busy machine it includes the time other processes held the core). Accuracy (LFW 10-fold, 1:N) is in
:mod:`edgeface.bench.peer_accuracy`; the peer's chain in :mod:`edgeface.bench.peer_dlib`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..config import Config
from ..evaluation.embeddings import centre_face
from ..vision.align import align
from ..vision.engine import Engine
from . import peer_accuracy

if TYPE_CHECKING:
    from .peer_dlib import FaceRecognitionPeer

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
clock = time.process_time  # CPU time of the whole process: helper threads a library starts count too


@contextlib.contextmanager
def one_core(core: int | None = None) -> Iterator[int]:
    """Pin this thread (and any it starts) to one CPU core with every library at one thread; restored after.

    ``core`` defaults to the last one this process may use. Libraries read the thread variables when they
    load, so the peer (dlib) must be loaded inside this block.
    """
    import cv2

    allowed = os.sched_getaffinity(0)
    core = max(allowed) if core is None else core
    if core not in allowed:
        raise ValueError(f"core {core} is not one this process may run on ({sorted(allowed)})")
    saved_env = {v: os.environ.get(v) for v in THREAD_VARIABLES}
    saved_cv = cv2.getNumThreads()
    os.environ.update(dict.fromkeys(THREAD_VARIABLES, "1"))
    cv2.setNumThreads(1)
    os.sched_setaffinity(0, {core})
    try:
        yield core
    finally:
        os.sched_setaffinity(0, allowed)
        cv2.setNumThreads(saved_cv)
        for v, old in saved_env.items():
            if old is None:
                os.environ.pop(v, None)
            else:
                os.environ[v] = old


def one_thread(config: Config) -> Config:
    """``config`` with one TFLite interpreter thread."""
    return dataclasses.replace(config, runtime=dataclasses.replace(config.runtime, num_threads=1))


class Side(Protocol):
    """One recognition chain, timed stage by stage on one image."""

    name: str
    stages: tuple[str, ...]

    def run(self, path: Path) -> tuple[bool, list[float]]:
        """(face found, CPU seconds per stage); stages after a miss are not run (0)."""
        ...


class EdgefaceSide:
    """edgeface's chain through its public :class:`~edgeface.vision.engine.Engine` verbs."""

    name = "edgeface"
    stages: tuple[str, ...] = ("decode", "detect", "landmarks", "warp", "embed")

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def run(self, path: Path) -> tuple[bool, list[float]]:
        e = self.engine
        t0 = clock()
        image = e.load_image(path)
        t1 = clock()
        face = centre_face(e.detect(image), image.shape)
        t2 = clock()
        if face is None:
            return False, [t1 - t0, t2 - t1, 0.0, 0.0, 0.0]
        face = e.refine(image, face)
        t3 = clock()
        chip = align(image, face, e.alignment)  # the warp alone (refine ran above, whatever it found)
        t4 = clock()
        e.embed(chip)
        t5 = clock()
        return True, [t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4]


class PeerSide:
    """face_recognition's chain (:class:`~edgeface.bench.peer_dlib.FaceRecognitionPeer`)."""

    name = "face_recognition"
    stages: tuple[str, ...] = ("decode", "detect", "landmarks", "embed")

    def __init__(self, peer: FaceRecognitionPeer) -> None:
        self.peer = peer

    def run(self, path: Path) -> tuple[bool, list[float]]:
        from .peer_dlib import centre

        p = self.peer
        t0 = clock()
        image = p.load(path)
        t1 = clock()
        face = centre(p.detect(image), image.shape)
        t2 = clock()
        if face is None:
            return False, [t1 - t0, t2 - t1, 0.0, 0.0]
        shape = p.landmarks(image, face)
        t3 = clock()
        p.encode(image, shape)
        t4 = clock()
        return True, [t1 - t0, t2 - t1, t3 - t2, t4 - t3]


def _round(side: Side, paths: list[Path]) -> dict[str, Any]:
    sums = np.zeros(len(side.stages))
    found = 0
    w0, c0 = time.perf_counter(), clock()
    for p in paths:
        ok, secs = side.run(p)
        found += ok
        sums += secs
    return {"cpu": clock() - c0, "wall": time.perf_counter() - w0, "found": found, "stages": sums.tolist()}


def timing(sides: list[Side], paths: list[Path], rounds: int, warmup: int = 5) -> dict[str, Any]:
    """Alternating rounds over ``paths``; per side the median ms per face over rounds and the stages."""
    for side in sides:
        for p in paths[:warmup]:
            side.run(p)
    runs: dict[str, list[dict[str, Any]]] = {s.name: [] for s in sides}
    for r in range(rounds):
        for side in sides if r % 2 == 0 else sides[::-1]:
            runs[side.name].append(_round(side, paths))
    out: dict[str, Any] = {}
    for side in sides:
        rs = runs[side.name]
        found = rs[0]["found"]
        cpu = [1000 * x["cpu"] / max(x["found"], 1) for x in rs]
        wall = [1000 * x["wall"] / max(x["found"], 1) for x in rs]
        stage_ms = np.sum([x["stages"] for x in rs], axis=0) * 1000 / max(sum(x["found"] for x in rs), 1)
        out[side.name] = {
            "images": len(paths),
            "faces_found": found,
            "ms_per_face": round(float(np.median(cpu)), 2),
            "ms_per_face_rounds": [round(v, 2) for v in cpu],
            "wall_ms_per_face": round(float(np.median(wall)), 2),
            "wall_ms_per_face_rounds": [round(v, 2) for v in wall],
            "stages_ms_per_face": {s: round(float(v), 3) for s, v in zip(side.stages, stage_ms, strict=True)},
        }
    return out


def run(
    config: Config,
    root: Path,
    *,
    samples: int = 200,
    rounds: int = 3,
    core: int | None = None,
    with_peer: bool = True,
    accuracy: bool = True,
    pairs_per_fold: int | None = None,
    wrap: Callable[[Iterable[Any]], Iterable[Any]] = lambda x: x,
) -> dict[str, Any]:
    """Speed side by side on ``samples`` LFW images (pinned to ``core``), then accuracy on LFW for both.

    ``with_peer = False`` measures edgeface alone (where dlib is not installed); ``pairs_per_fold``
    restricts the accuracy protocols to that many LFW pairs per fold (a quick check, not the benchmark).
    """
    from ..evaluation import lfw

    config = one_thread(config)
    pool = peer_accuracy.protocol_images(root, pairs_per_fold) if pairs_per_fold else lfw.all_images(root)
    chosen = sorted(random.Random(0).sample(pool, min(samples, len(pool))))
    out: dict[str, Any] = {"embedder": config.models.embedder, "detector": config.models.detector}
    with one_core(core) as pinned:
        engine = Engine(config)
        sides: list[Side] = [EdgefaceSide(engine)]
        peer: FaceRecognitionPeer | None = None
        if with_peer:
            from .peer_dlib import FaceRecognitionPeer

            peer = FaceRecognitionPeer()
            sides.append(PeerSide(peer))
            out["peer"] = {"dlib": peer.version, "models_sha256": peer.sha256}
        out["flip_fusion"] = engine.flip_fusion
        out["refine"] = engine.refiner.card.id if engine.refiner is not None else None
        out["pinned_core"] = pinned
        out["threads"] = {"tflite": config.runtime.num_threads, "opencv": 1, **dict.fromkeys(THREAD_VARIABLES, 1)}
        out["speed"] = timing(sides, chosen, rounds)
    speed = out["speed"]
    if with_peer:
        ours, theirs = speed["edgeface"], speed["face_recognition"]
        out["speedup"] = round(theirs["ms_per_face"] / ours["ms_per_face"], 2)
        out["speedup_wall"] = round(theirs["wall_ms_per_face"] / ours["wall_ms_per_face"], 2)
    if accuracy:
        out["accuracy"] = peer_accuracy.run(config, root, peer, pairs_per_fold, wrap)
    return out
