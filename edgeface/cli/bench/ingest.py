"""``edgeface bench ingest``: the central server's ingest throughput with 1 and more workers."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from ...bench import report, require_harness
from .options import ints, json_option


@click.command("ingest")
@click.option("--results", default=20000, show_default=True, help="Results queued at the broker per run.")
@click.option(
    "--workers",
    "workers_text",
    default="1,2",
    show_default=True,
    help="Worker process counts to measure, comma-separated.",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep brokers, databases and worker logs here (default: a temporary folder).",
)
@json_option
def bench_ingest(results: int, workers_text: str, workdir: Path | None, json_path: Path | None) -> None:
    """Results/s stored by `edgeface server` ingest workers on the shared subscription (local mosquitto,
    SQLite), and a check that no result is missing or stored twice (exit 1 otherwise)."""
    require_harness("ingest")
    workers = tuple(ints(workers_text))
    with tempfile.TemporaryDirectory(prefix="edgeface-bench-ingest-") as tmp:
        from ...bench.ingest import run_ingest_bench

        rows = run_ingest_bench(workdir or Path(tmp), results=results, workers=workers)
    click.echo(
        report.table(
            ["workers", "results", "seconds", "results/s", "duplicate rows", "missing"],
            [
                [r["workers"], r["results"], r["seconds"], r["results_per_s"], r["duplicate_rows"], r["missing"]]
                for r in rows
            ],
        )
    )
    report.write_json(json_path, "ingest", {"runs": rows})
    if any(r["duplicate_rows"] or r["missing"] or r["unexpected"] for r in rows):
        click.echo("edgeface: error: results missing or stored twice", err=True)
        raise click.exceptions.Exit(1)


@click.command("ingest-fuzz")
@click.option("--messages", default=10000, show_default=True, help="Messages generated and published.")
@click.option("--workers", default=2, show_default=True, help="Server ingest workers on the shared subscription.")
@click.option("--seed", default=11, show_default=True, help="Hypothesis seed (the same seed, the same messages).")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the broker, database and logs here (default: a temporary folder).",
)
@json_option
def bench_ingest_fuzz(messages: int, workers: int, seed: int, workdir: Path | None, json_path: Path | None) -> None:
    """Fuzz campaign: hypothesis-generated good, hostile and malformed results and statuses (retained and
    not) through a local mosquitto into the server's ingest workers; every good result must be stored
    once, every bad message rejected with its reason, no worker may stop (exit 1 otherwise). Needs
    hypothesis (pip install "edgeface[test]")."""
    require_harness("ingest-fuzz")
    try:
        import hypothesis  # noqa: F401
    except ImportError:
        click.echo('edgeface: error: the fuzz campaign needs hypothesis: pip install "edgeface[test]"', err=True)
        raise click.exceptions.Exit(2) from None
    with tempfile.TemporaryDirectory(prefix="edgeface-bench-fuzz-") as tmp:
        from ...bench.ingest_fuzz import run_campaign

        f = run_campaign(workdir or Path(tmp), messages=messages, workers=workers, seed=seed)
    rows = [[k, v] for k, v in f["sent"].items()]
    rows += [
        ["stored (distinct ids)", f["stored"]],
        ["good results / lost", f"{f['good_results']} / {f['good_lost']}"],
        ["rejected rows", f["rejected"]],
        ["retained poison redelivered", f["retained_poison_redelivered"]],
        ["workers alive", f"{f['workers_alive']} of {f['workers']}"],
        ["seconds", f["seconds"]],
    ]
    rows += [[f"rejected: {k}", v] for k, v in f["rejected_by_kind"].items()]
    click.echo(report.table(["figure", "value"], rows))
    report.write_json(json_path, "ingest-fuzz", f)
    if f["problems"]:
        for p in f["problems"]:
            click.echo(f"edgeface: error: {p}", err=True)
        raise click.exceptions.Exit(1)
