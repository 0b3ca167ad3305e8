"""``edgeface bench index`` and ``edgeface bench delta``: gallery search and transfer figures."""

from __future__ import annotations

from pathlib import Path

import click

from ...bench import report
from ...evaluation.lfw import lfw_dir
from ..app import AppContext, pass_app
from .options import ints, json_option, lfw_option, wrap

workdir_option = click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to build the bundles (default: a temporary folder; needs ~2 GiB at 1M).",
)


def _workdir(path: Path | None) -> Path:
    import tempfile

    d = path or Path(tempfile.mkdtemp(prefix="edgeface-bench-"))
    d.mkdir(parents=True, exist_ok=True)
    return d


@click.command("index")
@lfw_option
@json_option
@workdir_option
@click.option(
    "--sizes",
    "sizes_text",
    default="10000,100000,1000000",
    show_default=True,
    help="Gallery sizes (LFW embeddings plus fitted synthetic distractors).",
)
@click.option("--no-exact", is_flag=True, help="Skip timing the exact scan at sizes where the index is used.")
@pass_app
def bench_index(
    app: AppContext,
    lfw_path: Path | None,
    json_path: Path | None,
    workdir: Path | None,
    sizes_text: str,
    no_exact: bool,
) -> None:
    """Index build time, size, RSS, query p50/p99 on one core and recall@1 vs exact search."""
    from ...bench import index

    root = lfw_dir(lfw_path)
    figures = index.run(
        app.config, root, ints(sizes_text), _workdir(workdir), wrap("embedding LFW"), exact_compare=not no_exact
    )
    check = figures["distractor_check"]
    click.echo(
        f"Distractors fitted to {figures['real_gallery_rows']} real LFW embeddings; similarity quantiles "
        "(p5/p25/p50/p75/p95), real vs synthetic:"
    )
    click.echo(
        report.table(
            ["distribution", "real", "synthetic"],
            [
                [
                    name,
                    " ".join(f"{v:.3f}" for v in check[f"{name}_real"].values()),
                    " ".join(f"{v:.3f}" for v in check[f"{name}_synthetic"].values()),
                ]
                for name in ("nn_similarity", "impostor", "genuine")
            ],
        )
    )
    p = figures["probes"]
    click.echo(f"\nQueries: {p['mated']} mated + {p['non_mated']} non-mated LFW probes; latency on one core")
    click.echo(
        report.table(
            [
                "entries",
                "mode",
                "search",
                "build s",
                "disk MiB",
                "RSS MiB",
                "p50 ms",
                "p99 ms",
                "cpu p50",
                "cpu p99",
                "recall@1",
                "mated",
                "non-mated",
            ],
            [
                [
                    r["size"],
                    r["mode"],
                    r["search"],
                    r["build_s"],
                    r["disk_mb"],
                    r["rss_mb"],
                    r["p50_ms"],
                    r["p99_ms"],
                    r["cpu_p50_ms"],
                    r["cpu_p99_ms"],
                    r["recall_at_1"],
                    r["recall_mated"],
                    r["recall_non_mated"],
                ]
                for r in figures["rows"]
            ],
        )
    )
    loads = [r["machine_load_1min"] for r in figures["rows"]]
    click.echo(
        f"(p50/p99: wall clock; cpu: CPU time of the query thread. 1-minute load average while timing: "
        f"{min(loads)}-{max(loads)} on {report.machine()['cpus']} CPUs: other work inflates the wall-clock tail)"
    )
    report.write_json(json_path, "index", figures)


@click.command("delta")
@lfw_option
@json_option
@workdir_option
@click.option("--size", default=100_000, show_default=True, help="Gallery entries.")
@click.option("--fraction", default=0.01, show_default=True, help="Fraction of entries removed and added.")
@pass_app
def bench_delta(
    app: AppContext, lfw_path: Path | None, json_path: Path | None, workdir: Path | None, size: int, fraction: float
) -> None:
    """Bytes a unit downloads when a fraction of the gallery is removed and as many entries added."""
    from ...bench import index

    f = index.run_delta(app.config, lfw_dir(lfw_path), size, fraction, _workdir(workdir), wrap("embedding LFW"))
    click.echo(report.table(["figure", "value"], [[k, v] for k, v in f.items()]))
    report.write_json(json_path, "delta", f)
