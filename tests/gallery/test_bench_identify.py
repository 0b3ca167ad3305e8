"""`edgeface bench identify` as a user runs it, on a tiny subset of LFW: both protocols, both score spaces."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EDGEFACE = [sys.executable, "-c", "import sys; from edgeface.cli import main; sys.exit(main(sys.argv[1:]))"]


def test_bench_identify_smoke(lfw_root: Path) -> None:
    p = subprocess.run(
        [*EDGEFACE, "bench", "identify", "--lfw", str(lfw_root), "--embedders", "dlib-resnet-v1-int8", "--limit", "120",
         "--people", "all", "--images", "1,3", "--json"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    doc = json.loads(p.stdout)
    (result,) = doc["results"]
    single, multi = result["runs"]
    assert (single["images_per_person"], multi["images_per_person"]) == (1, 3)
    assert single["gallery_people"] == multi["gallery_people"] == 60
    assert single["gallery_images"] == 60 < multi["gallery_images"] <= 180
    assert multi["mated_probes"] < single["mated_probes"]  # enrolled images are no longer probes
    for run in (single, multi):
        for space in ("cosine", "normalised"):
            fig = run[space]
            assert fig["space"] == space and 0.5 < fig["rank1"] <= 1.0
            assert 0.0 <= fig["fpir_0.01"]["fnir"] <= 1.0
            assert set(fig["at"]) == {"derived for FPIR 0.01", "derived for FPIR 0.001"}
        assert run["cohort"]["size"] == 60
        assert run["normalised"]["at"]["derived for FPIR 0.01"]["threshold"] > 1.0  # normalised space, not cosine
    assert "normalised" in p.stderr and "FNIR@FPIR=1%" in p.stderr  # the table, side by side
