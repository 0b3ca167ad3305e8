"""Every `edgeface bench` command that had no test, run as a user runs it on tiny inputs, writing its JSON:
they must not rot between the long runs. Figures are not judged here (the machine is shared and small
samples are noisy); that each command runs, writes what it says and counts what it was given is.
(bench identify, ingest, ingest-fuzz, faults, peer and the stream pipeline have their own tests.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

EDGEFACE = [sys.executable, "-m", "edgeface", "bench"]


@pytest.fixture(scope="module")
def tiny_lfw(lfw_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LFW: the folders of the people in the cut (linked, never copied) and View 2 cut to 3 + 3 pairs per fold."""
    root = tmp_path_factory.mktemp("tiny-lfw")
    lines = (lfw_root / "pairs.txt").read_text().split("\n")
    folds, per = (int(v) for v in lines[0].split())
    rows = [ln for ln in lines[1:] if ln.strip()]
    keep = [r for f in range(folds) for r in rows[f * 2 * per : f * 2 * per + 3] + rows[f * 2 * per + per :][:3]]
    people = sorted({r.split("\t")[0] for r in keep} | {r.split("\t")[2] for r in keep if len(r.split("\t")) == 4})
    (root / "images").mkdir()
    for p in people:
        (root / "images" / p).symlink_to(lfw_root / "images" / p, target_is_directory=True)
    (root / "pairs.txt").write_text(f"{folds}\t3\n" + "\n".join(keep) + "\n")
    return root


def bench(args: list[str], out: Path | None = None, timeout: float = 600) -> dict[str, Any]:
    p = subprocess.run([*EDGEFACE, *args], capture_output=True, text=True, timeout=timeout, check=False)
    assert p.returncode == 0, p.stderr[-3000:]
    doc = json.loads(out.read_text() if out is not None else p.stdout)
    assert isinstance(doc, dict) and doc["benchmark"] == args[0] and doc["machine"], doc
    return doc


def test_bench_lfw(tiny_lfw: Path, tmp_path: Path) -> None:
    out = tmp_path / "lfw.json"
    results = bench(["lfw", "--lfw", str(tiny_lfw), "--out", str(out)], out)["results"]
    assert results  # one per embedder compared
    for r in results:
        assert len(r["fold_accuracies"]) == 10 and 0.5 <= r["accuracy_mean"] <= 1.0
        assert r["images"] <= 120 and r["by_yaw"]


def test_bench_detect(tiny_lfw: Path, tmp_path: Path) -> None:
    out = tmp_path / "detect.json"
    d = bench(
        ["detect", "--lfw", str(tiny_lfw), "--limit", "10", "--threads", "1", "--rotations", "0,90", "--out", str(out)],
        out,
    )
    assert d["recall"] and d["latency"]


def test_bench_pipeline(tiny_lfw: Path, tmp_path: Path) -> None:
    out = tmp_path / "pipeline.json"
    d = bench(["pipeline", "--lfw", str(tiny_lfw), "--samples", "10", "--threads", "1", "--out", str(out)], out)
    assert d["images"] == 10 and set(d["threads"]) == {"1"} and d["peak_rss_mb"] > 0


def test_bench_index(tiny_lfw: Path, tmp_path: Path) -> None:
    out = tmp_path / "index.json"
    d = bench(
        ["index", "--lfw", str(tiny_lfw), "--sizes", "1000", "--workdir", str(tmp_path / "w"), "--out", str(out)], out
    )
    assert d["real_gallery_rows"] > 0 and d["rows"] and all(row["size"] == 1000 for row in d["rows"]), d["rows"]


def test_bench_delta(tiny_lfw: Path, tmp_path: Path) -> None:
    out = tmp_path / "delta.json"
    d = bench(
        ["delta", "--lfw", str(tiny_lfw), "--size", "1000", "--workdir", str(tmp_path / "w"), "--out", str(out)], out
    )
    assert (d["size"], d["removed"], d["added"]) == (1000, 10, 10)
    assert 0 < d["delta_bytes"] < d["full_bundle_bytes"] and d["unit_via"] == "delta"


def test_bench_outbox(tmp_path: Path) -> None:
    out = tmp_path / "outbox.json"
    d = bench(
        ["outbox", "--results", "200", "--concurrent", "50", "--workdir", str(tmp_path / "w"), "--out", str(out)], out
    )
    assert (d["results"], d["concurrent_results"], d["qos"]) == (200, 50, 1) and d["drain"] and d["enqueue"]


def test_bench_e2e(lfw_root: Path, tmp_path: Path) -> None:
    d = bench(
        [
            "e2e",
            "--lfw",
            str(lfw_root),
            "--enrolled",
            "4",
            "--strangers",
            "2",
            "--probes",
            "1",
            "--workdir",
            str(tmp_path / "run"),
            "--out",
            str(tmp_path / "e2e.json"),
        ],
        tmp_path / "e2e.json",
    )
    a = d["accounting"]
    assert a["photos_fed"] == a["photos_in_ledger"] == 6 and a["results_lost"] == 0, a
    assert d["all_accounted_and_delivered_once"] and d["exit_code"] == 0
    assert d["identification"]["mated"]["probes"] + d["identification"]["non_mated"]["probes"] == 6
