"""``edgeface bench ...``: benchmarks that print a table and can write JSON."""

from __future__ import annotations

from pathlib import Path

import click

from ..bench import report
from ..bench.lfw import lfw_dir
from .app import AppContext, pass_app, progress
from .main import cli


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected comma-separated integers, e.g. 1,2") from None


def _wrap(label: str):  # type: ignore[no-untyped-def]
    def wrap(items: list) -> object:
        with progress(items, label) as bar:
            yield from bar

    return wrap


lfw_option = click.option("--lfw", "lfw_path", type=click.Path(file_okay=False, path_type=Path),
                          help="LFW folder with images/ and pairs.txt (default: ../shared/data/lfw or $EDGEFACE_LFW).")
json_option = click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
                           help="Also write the figures to this JSON file.")


@cli.group("bench")
def bench() -> None:
    """Benchmarks: accuracy, speed and memory figures (printed as tables)."""


@bench.command("detect")
@lfw_option
@json_option
@click.option("--limit", type=int, help="Use a random sample of this many images (default: all 13,233).")
@click.option("--threads", "threads_text", default="1,2", show_default=True, help="Thread counts for latency.")
@click.option("--rotations", "rot_text", default="0,90,180,270", show_default=True,
              help="Image rotations (clockwise degrees) to measure recall on.")
@pass_app
def bench_detect(app: AppContext, lfw_path: Path | None, json_path: Path | None, limit: int | None,
                 threads_text: str, rot_text: str) -> None:
    """Detection recall on LFW (upright and rotated) and latency p50/p95 per thread count."""
    from ..bench import detect

    root = lfw_dir(lfw_path)
    figures = detect.run(app.config, root, limit, _ints(threads_text), _ints(rot_text), _wrap("detect recall"))
    rows = [
        [f"{r}°", v["images"], v["found"], f"{100 * v['recall']:.2f}%", f"{100 * v['correctly_oriented']:.2f}%",
         v["latency_ms"]["p50"], v["latency_ms"]["p95"]]
        for r, v in figures["recall"].items()
    ]
    click.echo(f"Detection recall on LFW ({root}), detector {figures['detector']}, "
               f"rotation mode {figures['rotation_mode']}, {figures['recall_threads']} threads")
    click.echo(report.table(["rotation", "images", "found", "recall", "oriented", "p50 ms", "p95 ms"], rows))
    lat = figures["latency"]
    click.echo("\nLatency on upright images (decoding excluded)")
    click.echo(report.table(
        ["threads", "p50 ms", "p95 ms", "images/s"],
        [[t, v["p50"], v["p95"], v["images_per_s"]] for t, v in lat.items() if t != "peak_rss_mb"],
    ))
    click.echo(f"peak RSS {lat['peak_rss_mb']} MiB")
    report.write_json(json_path, "detect", figures)
