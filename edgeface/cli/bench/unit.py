"""``edgeface bench e2e``: the field unit end to end (see :mod:`edgeface.bench.e2e`)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import click

from ...bench import report, require_harness
from ...config import Config
from ...evaluation.lfw import lfw_dir
from ..app import EXIT_FAILED
from .options import json_option, lfw_option


@click.command("e2e")
@lfw_option
@json_option
@click.option("--enrolled", default=100, show_default=True, help="LFW people enrolled (first image each).")
@click.option("--strangers", default=100, show_default=True, help="LFW people not enrolled (non-mated probes).")
@click.option("--probes", default=2, show_default=True, help="Probe photos per person, at most.")
@click.option(
    "--workdir",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the run and its report (default: a temporary folder, removed unless --keep).",
)
@click.option("--keep", is_flag=True, help="Keep the run's folder (logs, outbox, ledger, copies of the photos).")
@click.option("--seed", default=0, show_default=True, help="Seed for choosing people and the order of photos.")
@click.option(
    "--fpir",
    type=float,
    default=None,
    help="Build the bundle's 1:N threshold for this target FPIR (default: gallery.target_fpir).",
)
def bench_e2e(
    lfw_path: Path | None,
    json_path: Path | None,
    enrolled: int,
    strangers: int,
    probes: int,
    out_dir: Path | None,
    keep: bool,
    seed: int,
    fpir: float | None,
) -> None:
    """Photos of enrolled and other people through `edgeface run` with the broker down for part of the run:
    every photo accounted for, every result delivered once, rank-1 and false matches at the threshold."""
    require_harness("e2e")
    from ...bench import e2e

    root = lfw_dir(lfw_path)
    work = out_dir or Path(tempfile.mkdtemp(prefix="edgeface-e2e-"))
    figures = e2e.run(
        root,
        work,
        enrolled=enrolled,
        strangers=strangers,
        probes=probes,
        seed=seed,
        target_fpir=fpir,
        progress=lambda s: click.echo(f"  {s}", err=True),
    )
    text = e2e.markdown(figures)
    (work / "e2e-report.md").write_text(text)
    (work / "e2e-report.json").write_text(json.dumps(figures, indent=2) + "\n")
    click.echo(text)
    report.write_json(json_path, "e2e", figures)
    if not (keep or out_dir):
        for sub in ("unit", "central", "broker"):  # the LFW copies go; the report stays
            shutil.rmtree(work / sub, ignore_errors=True)
    click.echo(f"report: {work / 'e2e-report.md'}")
    if not figures["all_accounted_and_delivered_once"] or figures["exit_code"] != 0:
        raise click.exceptions.Exit(EXIT_FAILED)


def stream_pipeline(
    config: Config,
    lfw_path: Path | None,
    json_path: Path | None,
    threads: list[int],
    source: str,
    duration: float,
    workers: int,
    sample_every: float,
) -> None:
    """``edgeface bench pipeline --source ...``: the daemon's pipeline on a stream (edgeface/bench/stream.py)."""
    from ...bench import stream

    with tempfile.TemporaryDirectory(prefix="edgeface-video-") as tmp:
        enroll: Any = None
        info: dict[str, Any] = {}
        if source == "synthetic":
            video = Path(tmp) / "lfw-grid.avi"
            info = stream.synthetic_video(lfw_dir(lfw_path), video)
            enroll = info.pop("_enroll")
        else:
            video = Path(source)
            if not video.is_file():
                raise click.BadParameter(f"{source}: no such video file (or use --source synthetic)")
        figures = stream.run_stream(
            config,
            video,
            threads=threads,
            workers=workers,
            duration_s=duration,
            sample_every_s=sample_every,
            enroll=enroll,
            progress=lambda s: click.echo(f"  {s}", err=True),
        )
    figures["stream"] = info or {"file": str(video)}
    click.echo(
        f"Daemon pipeline on {'a synthetic LFW stream' if info else video} "
        f"({info.get('faces_per_frame', '?')} faces per frame), {workers} worker(s), "
        f"{duration:.0f} s after a {figures['warmup_s']:.0f} s warm-up; detector {config.models.detector}, "
        f"embedder {config.models.embedder}"
    )
    rows = [
        [
            t,
            v["frames_per_s"],
            v["faces_per_s"],
            v["cpu_percent"],
            v["rss_mb_start"],
            v["rss_mb_end"],
            f"{v['window_s']:.0f} s: {v['window_rss_mb'][0]} -> {v['window_rss_mb'][1]}",
            f"{v['window_sqlite_mb'][0]} -> {v['window_sqlite_mb'][1]}",
        ]
        for t, v in figures["threads"].items()
    ]
    click.echo(
        report.table(
            [
                "threads",
                "frames/s",
                "faces/s",
                "CPU %",
                "RSS start MiB",
                "RSS end MiB",
                "RSS, last window MiB",
                "SQLite heap MiB",
            ],
            rows,
        )
    )
    for t, v in figures["threads"].items():
        click.echo(
            f"\nRSS (SQLite heap) over time, {t} thread(s): "
            + ", ".join(f"{s['t']:.0f}s {s['rss_mb']} ({s['sqlite_mb']})" for s in v["samples"])
        )
    report.write_json(json_path, "pipeline-stream", figures)
