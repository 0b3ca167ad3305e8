"""``edgeface embed``: the embedding of every face, per image, in input order."""

from __future__ import annotations

import click
import numpy as np

from ..engine import Engine
from ..errors import ImageError
from ..logs import get_logger
from .app import EXIT_FAILED, AppContext, emit_json, pass_app, progress
from .inputs import expand_images
from .main import cli

log = get_logger(__name__)


@cli.command("embed")
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image on stdout (JSON Lines).")
@click.option("--embedder", help="Embedder model id (models.embedder), e.g. dlib-resnet-v1-float32.")
@click.option("--threads", type=int, help="Interpreter threads (runtime.num_threads).")
@click.option("--passed-only", is_flag=True, help="Embed only faces that pass the quality gate.")
@pass_app
def embed_cmd(app: AppContext, images: tuple[str, ...], as_json: bool, embedder: str | None, threads: int | None,
              passed_only: bool) -> None:
    """Detect, align and embed every face in IMAGES (files or folders).

    Each face gets its box, score, quality verdict and `embedding` (L2-normalised). An image with no
    face gives a record with an empty face list; an unreadable one an error record (exit status 1).
    """
    config = app.with_overrides(**{"models.embedder": embedder, "runtime.num_threads": threads})
    engine = Engine(config)
    _ = engine.embedder  # load (and verify) the model before reading any image
    failed = 0
    with progress(expand_images(images), "embedding") as bar:
        for path in bar:
            record: dict = {"image": str(path)}
            try:
                image = engine.load_image(path)
            except ImageError as e:
                failed += 1
                record["error"] = str(e)
                log.warning("embed.image_failed", image=str(path), error=str(e))
                _print(record, as_json)
                continue
            faces = [f for f in engine.detect_and_assess(image) if f.quality.passed or not passed_only]
            record.update(width=image.shape[1], height=image.shape[0], model=engine.embedder_card.id, faces=[])
            if faces:
                vecs = engine.embed(np.stack([engine.align(image, f.face) for f in faces]))
                for f, v in zip(faces, vecs):
                    record["faces"].append({**f.to_dict(), "embedding": [round(float(x), 6) for x in v]})
            _print(record, as_json)
    if failed:
        raise click.exceptions.Exit(EXIT_FAILED)


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
