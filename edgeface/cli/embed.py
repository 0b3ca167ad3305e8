"""``edgeface embed``: the embedding of every face, per image, in input order."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from ..vision.engine import Engine
from .app import AppContext, emit_json, pass_app
from .inputs import expand_images, for_each_image


@click.command("embed")
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image on stdout (JSON Lines).")
@click.option("--embedder", help="Embedder model id (models.embedder), e.g. dlib-resnet-v1-float32.")
@click.option("--threads", type=int, help="Interpreter threads (runtime.num_threads).")
@click.option("--passed-only", is_flag=True, help="Embed only faces that pass the quality gate.")
@pass_app
def embed_cmd(
    app: AppContext,
    images: tuple[str, ...],
    as_json: bool,
    embedder: str | None,
    threads: int | None,
    passed_only: bool,
) -> None:
    """Detect, align and embed every face in IMAGES (files or folders).

    Each face gets its box, score, quality verdict and `embedding` (L2-normalised). An image with no
    face gives a record with an empty face list; an unreadable one an error record (exit status 1).
    """
    config = app.with_overrides(**{"models.embedder": embedder, "runtime.num_threads": threads})
    engine = Engine(config)
    _ = engine.embedder  # load (and verify) the model before reading any image

    def describe(path: Path, image: np.ndarray) -> dict:
        faces = [f for f in engine.detect_and_assess(image) if f.quality.passed or not passed_only]
        record: dict = {
            "width": image.shape[1],
            "height": image.shape[0],
            "model": engine.embedder_card.id,
            "faces": [],
        }
        if faces:
            vecs = engine.embed(np.stack([engine.align(image, f.face) for f in faces]))
            for f, v in zip(faces, vecs, strict=True):
                record["faces"].append({**f.to_dict(), "embedding": [round(float(x), 6) for x in v]})
        return record

    for_each_image(engine, expand_images(images), "embed", describe, lambda r: _print(r, as_json))


def _print(record: dict, as_json: bool) -> None:
    if as_json:
        emit_json(record)
        return
    if "error" in record:
        click.echo(f"{record['image']}: ERROR {record['error']}")
        return
    click.echo(f"{record['image']}: {len(record['faces'])} face(s), model {record['model']}")
    for i, f in enumerate(record["faces"]):
        head = ", ".join(f"{x:+.3f}" for x in f["embedding"][:4])
        ok = "ok" if f["quality"]["passed"] else "refused"
        click.echo(f"  face {i}: score {f['score']:.3f} quality {ok} embedding [{head}, ...] ({len(f['embedding'])}-d)")
