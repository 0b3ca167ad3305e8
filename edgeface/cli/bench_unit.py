"""``edgeface bench e2e``: the field unit end to end (see :mod:`edgeface.bench.e2e`)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import click

from ..bench import report
from ..bench.lfw import lfw_dir
from .app import EXIT_FAILED
from .bench import bench, json_option, lfw_option


@bench.command("e2e")
@lfw_option
@json_option
@click.option("--enrolled", default=100, show_default=True, help="LFW people enrolled (first image each).")
@click.option("--strangers", default=100, show_default=True, help="LFW people not enrolled (non-mated probes).")
@click.option("--probes", default=2, show_default=True, help="Probe photos per person, at most.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the run and its report (default: a temporary folder, removed unless --keep).")
@click.option("--keep", is_flag=True, help="Keep the run's folder (logs, outbox, ledger, copies of the photos).")
@click.option("--seed", default=0, show_default=True, help="Seed for choosing people and the order of photos.")
def bench_e2e(lfw_path: Path | None, json_path: Path | None, enrolled: int, strangers: int, probes: int,
              out_dir: Path | None, keep: bool, seed: int) -> None:
    """Photos of enrolled and other people through `edgeface run` with the broker down for part of the run:
    every photo accounted for, every result delivered once, rank-1 and false matches at the threshold."""
    from ..bench import e2e

    root = lfw_dir(lfw_path)
    work = out_dir or Path(tempfile.mkdtemp(prefix="edgeface-e2e-"))
    figures = e2e.run(root, work, enrolled=enrolled, strangers=strangers, probes=probes, seed=seed,
                      progress=lambda s: click.echo(f"  {s}", err=True))
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
