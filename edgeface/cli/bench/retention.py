"""``edgeface bench purge``: the central server's retention purge: seconds it holds the database, memory."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from ...bench import report, require_harness
from .options import json_option


@click.command("purge")
@click.option("--results", default=20000, show_default=True, help="Results in the database (80% due).")
@click.option("--crop-bytes", default=20000, show_default=True, help="Size of each result's face crop (JPEG).")
@click.option(
    "--batch", default=5000, show_default=True, help="Most results one transaction deletes (server.retention.batch)."
)
@click.option("--database-url", help="A fresh, empty database to fill (default: SQLite in the work folder).")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the database and the export here (default: a temporary folder).",
)
@json_option
def bench_purge(
    results: int,
    crop_bytes: int,
    batch: int,
    database_url: str | None,
    workdir: Path | None,
    json_path: Path | None,
) -> None:
    """Seconds a retention purge (export first, one transaction) and its dry run take, deleted results/s,
    export size and peak memory; exit 1 if the purge kept or deleted the wrong results."""
    require_harness("purge")
    with tempfile.TemporaryDirectory(prefix="edgeface-bench-purge-") as tmp:
        from ...bench.purge import run_purge_bench

        r = run_purge_bench(
            workdir or Path(tmp), results=results, crop_bytes=crop_bytes, batch=batch, database_url=database_url
        )
    click.echo(
        report.table(
            [
                "backend",
                "results",
                "crop B",
                "dry run s",
                "purge s",
                "batches",
                "longest batch s",
                "deleted",
                "crops",
                "deleted/s",
                "export MB",
                "peak RSS MB",
                "checked",
            ],
            [
                [
                    r[k]
                    for k in (
                        "backend",
                        "results",
                        "crop_bytes",
                        "dry_run_s",
                        "purge_s",
                        "batches",
                        "longest_batch_s",
                        "deleted",
                        "crops_removed",
                        "deleted_per_s",
                        "export_mb",
                        "peak_rss_mb",
                        "checked",
                    )
                ]
            ],
        )
    )
    report.write_json(json_path, "purge", r)
    if not r["checked"]:
        click.echo("edgeface: error: the purge kept or deleted the wrong results", err=True)
        raise click.exceptions.Exit(1)
