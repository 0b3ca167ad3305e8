"""``edgeface bench ingest``: the central server's ingest throughput with 1 and more workers."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from ..bench import report
from .bench import _ints, bench, json_option


@bench.command("ingest")
@click.option("--results", default=20000, show_default=True, help="Results queued at the broker per run.")
@click.option("--workers", "workers_text", default="1,2", show_default=True,
              help="Worker process counts to measure, comma-separated.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path),
              help="Keep brokers, databases and worker logs here (default: a temporary folder).")
@json_option
def bench_ingest(results: int, workers_text: str, workdir: Path | None, json_path: Path | None) -> None:
    """Results/s stored by `edgeface server` ingest workers on the shared subscription (local mosquitto,
    SQLite), and a check that no result is missing or stored twice (exit 1 otherwise)."""
    workers = tuple(_ints(workers_text))
    with tempfile.TemporaryDirectory(prefix="edgeface-bench-ingest-") as tmp:
        from ..bench.ingest import run_ingest_bench

        rows = run_ingest_bench(workdir or Path(tmp), results=results, workers=workers)
    click.echo(report.table(["workers", "results", "seconds", "results/s", "duplicate rows", "missing"],
                            [[r["workers"], r["results"], r["seconds"], r["results_per_s"], r["duplicate_rows"],
                              r["missing"]] for r in rows]))
    report.write_json(json_path, "ingest", {"runs": rows})
    if any(r["duplicate_rows"] or r["missing"] or r["unexpected"] for r in rows):
        click.echo("edgeface: error: results missing or stored twice", err=True)
        raise click.exceptions.Exit(1)
