"""``edgeface detect``: faces, keypoints, scores and quality verdicts per image."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from ..vision.engine import Engine
from ..vision.imageio import save_image
from .app import AppContext, emit_json, pass_app
from .inputs import expand_images, for_each_image


@click.command("detect")
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image on stdout (JSON Lines).")
@click.option(
    "--save-crops",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write each face's aligned chip (the embedder's input) as PNG into this folder.",
)
@click.option("--threads", type=int, help="Interpreter threads (runtime.num_threads).")
@click.option("--detector", help="Detector model id (models.detector).")
@click.option("--all-rotations", is_flag=True, help="Run every rotation, not only until a face is found.")
@pass_app
def detect_cmd(
    app: AppContext,
    images: tuple[str, ...],
    as_json: bool,
    save_crops: Path | None,
    threads: int | None,
    detector: str | None,
    all_rotations: bool,
) -> None:
    """Detect faces in IMAGES (files or folders) and print box, keypoints, score and quality.

    Exit status 1 if any image could not be read (the others are still reported).
    """
    config = app.with_overrides(
        **{
            "runtime.num_threads": threads,
            "models.detector": detector,
            "detect.rotation_mode": "all" if all_rotations else None,
        }
    )
    engine = Engine(config)
    paths = expand_images(images)
    if save_crops:
        save_crops.mkdir(parents=True, exist_ok=True)
        _ = engine.alignment  # fail now, not after the first image, if the embedder card is missing

    def describe(path: Path, image: np.ndarray) -> dict:
        faces = engine.detect_and_assess(image)
        record = {"width": image.shape[1], "height": image.shape[0], "faces": [f.to_dict() for f in faces]}
        if save_crops:
            for i, f in enumerate(faces):
                chip_path = save_crops / f"{path.stem}_face{i}.png"
                save_image(chip_path, engine.align(image, f.face))
                record["faces"][i]["crop"] = str(chip_path)
        return record

    for_each_image(engine, paths, "detect", describe, lambda r: _print(r, as_json))


def _print(record: dict, as_json: bool) -> None:
    if as_json:
        emit_json(record)
        return
    if "error" in record:
        click.echo(f"{record['image']}: ERROR {record['error']}")
        return
    faces = record["faces"]
    click.echo(f"{record['image']}: {record['width']}x{record['height']}, {len(faces)} face(s)")
    for i, f in enumerate(faces):
        q = f["quality"]
        verdict = "ok" if q["passed"] else "refused (" + "; ".join(q["reasons"]) + ")"
        box = ", ".join(f"{v:.0f}" for v in f["box"])
        click.echo(
            f"  face {i}: box [{box}] score {f['score']:.3f} rotation {f['rotation']} "
            f"yaw {q['yaw']} pitch {q['pitch']} roll {q['roll']} sharpness {q['sharpness']} -> {verdict}"
        )
