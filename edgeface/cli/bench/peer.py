"""``edgeface bench peer``: edgeface against face_recognition on the same LFW images, on one pinned core."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ...bench import report
from ...evaluation.lfw import lfw_dir
from ..app import AppContext, pass_app
from .options import json_option, lfw_option, wrap


@click.command("peer")
@lfw_option
@json_option
@click.option("--samples", default=200, show_default=True, help="LFW images timed per round.")
@click.option("--rounds", default=3, show_default=True, help="Alternating timing rounds (median reported).")
@click.option("--core", type=int, help="CPU core to pin to (default: the last one this process may use).")
@click.option(
    "--peer/--without-peer",
    "with_peer",
    default=True,
    show_default=True,
    help="Measure face_recognition too (needs `pip install 'edgeface[peer]'`); --without-peer: edgeface alone.",
)
@click.option("--accuracy/--speed-only", default=True, show_default=True, help="Also LFW 10-fold and 1:N for both.")
@click.option(
    "--pairs-per-fold",
    type=int,
    help="Accuracy on only this many matched and as many mismatched LFW pairs per fold, and their people (a quick check, not the benchmark; "
    "the peer needs ~0.1 s per image, about half an hour for all of LFW, kept in the cache after).",
)
@pass_app
def bench_peer(
    app: AppContext,
    lfw_path: Path | None,
    json_path: Path | None,
    samples: int,
    rounds: int,
    core: int | None,
    with_peer: bool,
    accuracy: bool,
    pairs_per_fold: int | None,
) -> None:
    """Side by side with face_recognition (dlib): ms per face on one core, faces found, LFW and 1:N."""
    from ...bench import peer

    root = lfw_dir(lfw_path)
    figures = peer.run(
        app.config,
        root,
        samples=samples,
        rounds=rounds,
        core=core,
        with_peer=with_peer,
        accuracy=accuracy,
        pairs_per_fold=pairs_per_fold,
        wrap=wrap("embedding LFW"),
    )
    speed = figures["speed"]
    click.echo(
        f"Whole chain per face on one core (core {figures['pinned_core']}, every library at 1 thread), "
        f"{rounds} alternating rounds over the same {speed['edgeface']['images']} LFW images; "
        f"edgeface: {figures['detector']} + {figures['refine'] or 'no'} landmarks + {figures['embedder']}"
        f"{' (flip fusion)' if figures['flip_fusion'] else ''}"
    )
    click.echo(
        report.table(
            ["chain", "CPU ms/face", "rounds", "wall ms/face", "faces found", "per stage (CPU ms/face)"],
            [
                [
                    name,
                    v["ms_per_face"],
                    " ".join(f"{r:.1f}" for r in v["ms_per_face_rounds"]),
                    v["wall_ms_per_face"],
                    f"{v['faces_found']}/{v['images']}",
                    ", ".join(f"{s} {ms:.2f}" for s, ms in v["stages_ms_per_face"].items()),
                ]
                for name, v in speed.items()
            ],
        )
    )
    if "speedup" in figures:
        click.echo(
            f"edgeface is {figures['speedup']}x faster per face in CPU time ({figures['speedup_wall']}x in wall-clock time)"
        )
    if "accuracy" in figures:
        _accuracy_table(figures["accuracy"])
    report.write_json(json_path, "peer", figures)


def _accuracy_table(acc: dict[str, Any]) -> None:
    def pct(v: float) -> str:
        return f"{100 * v:.2f}%"

    first = next(iter(acc.values()))
    click.echo(
        f"\nAccuracy on LFW ({first['lfw']['pairs']} View 2 pairs, 10 folds; 1:N gallery {first['identify']['gallery']}"
        f" people, {first['identify']['mated_probes']} mated and {first['identify']['non_mated_probes']} non-mated probes)"
    )
    rows = []
    for name, r in acc.items():
        v, i = r["lfw"], r["identify"]
        rows.append(
            [
                name,
                r["metric"],
                f"{100 * v['accuracy_mean']:.2f} ± {100 * v['accuracy_std']:.2f}",
                pct(v["tar_at_far_1e-3"]),
                f"{r['images_without_face']}/{r['images']}",
                pct(i["rank1"]),
                pct(i["fpir_0.01"]["fnir"]),
                pct(i["fpir_0.001"]["fnir"]),
            ]
        )
    click.echo(
        report.table(
            ["chain", "score", "LFW %", "TAR@FAR=1e-3", "no face", "rank-1", "FNIR@FPIR=1%", "FNIR@FPIR=0.1%"], rows
        )
    )
