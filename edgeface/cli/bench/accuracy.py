"""``edgeface bench detect|lfw|identify|pipeline``: accuracy and speed of the recognition chain on LFW."""

from __future__ import annotations

from pathlib import Path

import click

from ...bench import report
from ...evaluation.lfw import lfw_dir
from ..app import AppContext, pass_app
from .options import ints, json_option, lfw_option, wrap


@click.command("detect")
@lfw_option
@json_option
@click.option("--limit", type=int, help="Use a random sample of this many images (default: all 13,233).")
@click.option("--threads", "threads_text", default="1,2", show_default=True, help="Thread counts for latency.")
@click.option(
    "--rotations",
    "rot_text",
    default="0,90,180,270",
    show_default=True,
    help="Image rotations (clockwise degrees) to measure recall on.",
)
@pass_app
def bench_detect(
    app: AppContext, lfw_path: Path | None, json_path: Path | None, limit: int | None, threads_text: str, rot_text: str
) -> None:
    """Detection recall on LFW (upright and rotated) and latency p50/p95 per thread count."""
    from ...bench import detect

    root = lfw_dir(lfw_path)
    figures = detect.run(app.config, root, limit, ints(threads_text), ints(rot_text), wrap("detect recall"))
    rows = [
        [
            f"{r}°",
            v["images"],
            v["found"],
            f"{100 * v['recall']:.2f}%",
            f"{100 * v['correctly_oriented']:.2f}%",
            v["latency_ms"]["p50"],
            v["latency_ms"]["p95"],
        ]
        for r, v in figures["recall"].items()
    ]
    click.echo(
        f"Detection recall on LFW ({root}), detector {figures['detector']}, "
        f"rotation mode {figures['rotation_mode']}, {figures['recall_threads']} threads"
    )
    click.echo(report.table(["rotation", "images", "found", "recall", "oriented", "p50 ms", "p95 ms"], rows))
    lat = figures["latency"]
    click.echo("\nLatency on upright images (decoding excluded)")
    click.echo(
        report.table(
            ["threads", "p50 ms", "p95 ms", "images/s"],
            [[t, v["p50"], v["p95"], v["images_per_s"]] for t, v in lat.items() if t != "peak_rss_mb"],
        )
    )
    click.echo(f"peak RSS {lat['peak_rss_mb']} MiB")
    report.write_json(json_path, "detect", figures)


embedders_option = click.option(
    "--embedders",
    "embedders_text",
    default="mobilefacenet-v1-float32,mobilefacenet-v1-int8",
    show_default=True,
    help="Comma-separated embedder model ids to compare.",
)
flip_option = click.option(
    "--flip/--no-flip",
    default=None,
    help="Flip fusion on or off (embed.flip_fusion; default: the embedder card's choice).",
)


@click.command("lfw")
@lfw_option
@json_option
@embedders_option
@flip_option
@click.option(
    "--dlib-chips",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also score chips aligned by dlib itself (npz from models/alignment/dlib_reference.py).",
)
@pass_app
def bench_lfw(
    app: AppContext,
    lfw_path: Path | None,
    json_path: Path | None,
    embedders_text: str,
    flip: bool,
    dlib_chips: Path | None,
) -> None:
    """LFW View 2 verification: 10-fold accuracy, TAR@FAR=1e-3, threshold, accuracy by yaw."""
    from ...evaluation import accuracy

    root = lfw_dir(lfw_path)
    config = app.with_overrides(**{"embed.flip_fusion": flip})
    results = []
    for emb in [e.strip() for e in embedders_text.split(",") if e.strip()]:
        cfg = accuracy.with_embedder(config, emb)
        results.append(accuracy.verify_one(cfg, root, wrap(f"embedding LFW ({emb})")))
        if dlib_chips:
            results.extend(accuracy.verify_dlib_chips(cfg, root, dlib_chips, wrap(f"embedding LFW ({emb})")))
    click.echo(
        f"LFW View 2 (10 folds, threshold chosen on the 9 training folds), detector {app.config.models.detector}"
    )
    rows = []
    for r in results:
        tar = r.get("tar_at_far_1e-3")
        rows.append(
            [
                r["embedder"],
                r["alignment"],
                "yes" if r["flip"] else "no",
                f"{100 * r['accuracy_mean']:.2f} ± {100 * r['accuracy_std']:.2f}",
                f"{100 * tar['tar']:.2f}%" if tar else "-",
                f"{r['threshold_mean']:.4f}",
                r["images_without_face"],
            ]
        )
    click.echo(
        report.table(["embedder", "alignment", "flip", "accuracy %", "TAR@FAR=1e-3", "threshold", "no face"], rows)
    )
    for r in results:
        if "by_yaw" in r:
            click.echo(
                f"\nAccuracy by estimated |yaw| (larger of the pair), {r['embedder']}, "
                f"threshold {r['threshold_mean']:.4f}"
            )
            click.echo(
                report.table(
                    ["|yaw| deg", "pairs", "accuracy"],
                    [[b["yaw"], b["pairs"], f"{100 * b['accuracy']:.2f}%"] for b in r["by_yaw"]],
                )
            )
    report.write_json(json_path, "lfw", {"results": results})


@click.command("identify")
@lfw_option
@json_option
@embedders_option
@flip_option
@click.option(
    "--images",
    "images_text",
    default="1,3",
    show_default=True,
    help="Gallery images per person: 1 is the single-image protocol, 3 the multi-image one (up to 3 where "
    "LFW has them, at least one left as a probe).",
)
@click.option(
    "--people",
    "people_text",
    default="all,held-out",
    show_default=True,
    help="People to run on: all (comparable with earlier figures), held-out (the half never tuned on), "
    "validation (the half the normalisation's settings were chosen on).",
)
@click.option("--limit", type=int, help="Only the first N people (a smoke run).")
@click.option(
    "--merge-duplicates",
    is_flag=True,
    help="Count LFW names that are one person (edgeface/evaluation/lfw.py DUPLICATES, checked by eye) as one.",
)
@pass_app
def bench_identify(
    app: AppContext,
    lfw_path: Path | None,
    json_path: Path | None,
    embedders_text: str,
    flip: bool,
    images_text: str,
    people_text: str,
    limit: int | None,
    merge_duplicates: bool,
) -> None:
    """Open-set 1:N on LFW, raw cosine and normalised side by side: rank-1, FNIR at FPIR 1% and 0.1%, and
    FPIR/FNIR at the thresholds a bundle of that gallery derives."""
    from ...evaluation import accuracy

    root = lfw_dir(lfw_path)
    config = app.with_overrides(**{"embed.flip_fusion": flip})
    people = tuple(p.strip() for p in people_text.split(",") if p.strip())
    bad = [p for p in people if p not in accuracy.PEOPLE]
    if bad:
        raise click.BadParameter(f"{', '.join(bad)}; choose from {', '.join(accuracy.PEOPLE)}", param_hint="--people")
    results = []
    for emb in [e.strip() for e in embedders_text.split(",") if e.strip()]:
        cfg = accuracy.with_embedder(config, emb)
        results.append(
            accuracy.identify_one(
                cfg,
                root,
                wrap(f"embedding LFW ({emb})"),
                images=tuple(ints(images_text)),
                people=people,
                limit=limit,
                merge_duplicates=merge_duplicates,
            )
        )
    click.echo(
        "Open-set 1:N on LFW: half the people enrolled (seed 0), probes = their other images + every image of "
        f"the rest; held-out/validation = halves of the people (seed {results[0]['split_seed']}). 'cosine': raw "
        "cosine of the best image; 'normalised': S-norm of the identity template (the bundle's decision score)"
    )
    rows = []
    for r in results:
        for run in r["runs"]:
            for space in ("cosine", "normalised"):
                v = run.get(space)
                if v is None:
                    continue
                derived = v["at"].get("derived for FPIR 0.01")
                rows.append(
                    [
                        r["embedder"],
                        run["people"],
                        f"{run['gallery_people']} x{run['images_per_person']} ({run['gallery_images']})",
                        f"{run['mated_probes']}/{run['non_mated_probes']}",
                        space,
                        f"{100 * v['rank1']:.2f}%",
                        f"{100 * v['fpir_0.01']['fnir']:.2f}%",
                        f"{100 * v['fpir_0.001']['fnir']:.2f}%",
                        f"t={derived['threshold']:.3f}: {100 * derived['fpir']:.2f}% / {100 * derived['fnir']:.2f}%"
                        if derived
                        else "-",
                    ]
                )
    click.echo(
        report.table(
            [
                "embedder",
                "people",
                "gallery (images)",
                "mated/non-mated",
                "score",
                "rank-1",
                "FNIR@FPIR=1%",
                "FNIR@FPIR=0.1%",
                "derived for 1%: FPIR / FNIR",
            ],
            rows,
        )
    )
    report.write_json(json_path, "identify", {"results": results})


@click.command("pipeline")
@lfw_option
@json_option
@click.option("--threads", "threads_text", default="1,2", show_default=True, help="Interpreter thread counts.")
@click.option("--samples", default=200, show_default=True, help="LFW images to time.")
@click.option("--embedder", help="Embedder model id (default: models.embedder).")
@click.option(
    "--source",
    "stream_source",
    metavar="VIDEO|synthetic",
    help="Stream mode: run the daemon's pipeline on this video file (looped), or on a synthetic stream of "
    "LFW faces (4 per frame), instead of timing stages on LFW images.",
)
@click.option("--duration", type=float, default=60.0, show_default=True, help="Stream mode: seconds measured.")
@click.option("--workers", default=1, show_default=True, help="Stream mode: inference workers (run.workers).")
@click.option(
    "--sample-every",
    type=float,
    default=10.0,
    show_default=True,
    help="Stream mode: seconds between samples of frames, CPU and RSS.",
)
@pass_app
def bench_pipeline(
    app: AppContext,
    lfw_path: Path | None,
    json_path: Path | None,
    threads_text: str,
    samples: int,
    embedder: str | None,
    stream_source: str | None,
    duration: float,
    workers: int,
    sample_every: float,
) -> None:
    """Per-stage latency p50/p95 (decode, detect, quality, align, embed), faces/s and RSS, by threads.

    With --source: sustained frames/s, faces/s, CPU use and RSS over time of the whole daemon pipeline on a
    stream (see edgeface/bench/stream.py)."""
    from ...bench import pipeline
    from ...evaluation import lfw as lfw_mod

    config = app.with_overrides(**{"models.embedder": embedder})
    if stream_source:
        from .unit import stream_pipeline

        stream_pipeline(config, lfw_path, json_path, ints(threads_text), stream_source, duration, workers, sample_every)
        return
    root = lfw_dir(lfw_path)
    figures = pipeline.run(config, lfw_mod.all_images(root), ints(threads_text), samples)
    click.echo(
        f"Pipeline on {figures['images']} LFW images, one face each: detector {figures['detector']}, "
        f"embedder {figures['embedder']} (latency in ms, p50 / p95)"
    )
    rows = []
    for t, v in figures["threads"].items():
        rows.append(
            [
                t,
                *[f"{v[s]['p50']:.2f} / {v[s]['p95']:.2f}" for s in (*pipeline.STAGES, "total")],
                v["faces_per_s"],
                v["rss_mb"],
            ]
        )
    click.echo(report.table(["threads", *pipeline.STAGES, "total", "faces/s", "RSS MiB"], rows))
    report.write_json(json_path, "pipeline", figures)
