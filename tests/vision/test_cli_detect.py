"""`edgeface detect` as a user runs it: the real console entry point, in a subprocess."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from edgeface.vision.cards import find_card

EMBEDDER_CARD = """
card_version = 1
id = "test-embedder"
task = "embedder"
name = "alignment-only test card"
file = "missing.tflite"
sha256 = "{zeros}"
[licence]
spdx = "CC0-1.0"
[input]
width = 112
height = 112
colour = "RGB"
scale = 1.0
offset = 0.0
resize = "none"
[embedding]
output = "out"
dim = 8
metric = "cosine"
[alignment.template]
right_eye = [38.0, 46.0]
left_eye = [74.0, 46.0]
nose_tip = [56.0, 68.0]
mouth = [56.0, 88.0]
"""


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgeface", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_json_records_in_input_order_with_errors(tmp_path: Path, images_dir: Path) -> None:
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes((images_dir / "obama.jpg").read_bytes()[:3000])
    args = [str(images_dir / "obama.jpg"), str(tmp_path / "missing.jpg"), str(corrupt), str(images_dir / "biden.jpg")]
    r = run("detect", "--json", *args)
    assert r.returncode == 1, r.stderr
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    assert [rec["image"] for rec in recs] == args
    assert len(recs[0]["faces"]) == 1 and recs[0]["faces"][0]["quality"]["passed"] is True
    assert set(recs[0]["faces"][0]["keypoints"]) == {
        "right_eye",
        "left_eye",
        "nose_tip",
        "mouth",
        "right_ear_tragion",
        "left_ear_tragion",
    }
    assert "no such file" in recs[1]["error"] and "truncated" in recs[2]["error"]
    assert len(recs[3]["faces"]) == 1
    # the record is the report: the missing file is named once (its own record), not again in the error
    # text or a log line on stderr
    assert recs[1]["error"] == "no such file"
    assert "missing.jpg" not in r.stderr
    human = run("detect", str(tmp_path / "missing.jpg"))
    assert human.returncode == 1 and human.stdout.count("missing.jpg") == 1 and "missing.jpg" not in human.stderr


def test_human_output_and_success_exit(images_dir: Path) -> None:
    r = run("detect", str(images_dir / "obama.jpg"))
    assert r.returncode == 0, r.stderr
    assert "1 face(s)" in r.stdout and "-> ok" in r.stdout


def test_folder_argument_and_no_faces(tmp_path: Path, images_dir: Path) -> None:
    shutil.copy(images_dir / "obama2.jpg", tmp_path / "b.jpg")
    Image.new("RGB", (64, 48), (200, 200, 200)).save(tmp_path / "a.png")
    r = run("detect", "--json", str(tmp_path))
    assert r.returncode == 0, r.stderr
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    assert [Path(x["image"]).name for x in recs] == ["a.png", "b.jpg"]
    assert recs[0]["faces"] == [] and len(recs[1]["faces"]) == 1


def test_save_crops_uses_the_embedder_template(tmp_path: Path, images_dir: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    det = find_card("blazeface-short-range")
    shutil.copy(det.path, models)
    shutil.copy(det.model_path, models)
    (models / "test-embedder.toml").write_text(EMBEDDER_CARD.format(zeros="0" * 64))
    crops = tmp_path / "crops"
    r = run(
        "--set",
        f"models.dir={models}",
        "--set",
        "models.embedder=test-embedder",
        "detect",
        "--json",
        "--save-crops",
        str(crops),
        str(images_dir / "obama.jpg"),
    )
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)
    chip = Image.open(rec["faces"][0]["crop"])
    assert chip.size == (112, 112) and chip.mode == "RGB"


def test_bad_config_exits_2_naming_the_key(tmp_path: Path, images_dir: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[runtime]\nbackend = "tpu"\n')
    r = run("--config", str(cfg), "detect", str(images_dir / "obama.jpg"))
    assert r.returncode == 2
    assert "runtime.backend" in r.stderr and "'edgetpu'" in r.stderr
    assert r.stdout == ""


def test_unknown_detector_is_a_configuration_error_exit_2_with_advice(images_dir: Path) -> None:
    """README: configuration errors exit 2; a model id with no card is one (models.detector names it)."""
    r = run("detect", "--detector", "nope", str(images_dir / "obama.jpg"))
    assert r.returncode == 2
    assert "no model card" in r.stderr and "blazeface-short-range" in r.stderr


@pytest.mark.parametrize("args", [["--help"], ["detect", "--help"], ["bench", "detect", "--help"]])
def test_help(args: list[str]) -> None:
    r = run(*args)
    assert r.returncode == 0 and "Usage:" in r.stdout
