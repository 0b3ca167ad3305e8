"""``edgeface bench outbox`` and ``edgeface bench faults``: store-and-forward figures on a real broker."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from ...bench import report, require_harness
from .options import json_option


def _workdir(path: Path | None) -> Path:
    return Path(path) if path else Path(tempfile.mkdtemp(prefix="edgeface-bench-"))


@click.command("outbox")
@json_option
@click.option("--results", type=int, default=20000, show_default=True, help="Results enqueued, then drained.")
@click.option(
    "--concurrent", type=int, default=5000, show_default=True, help="Results enqueued while the publisher drains."
)
@click.option("--inflight", type=int, default=100, show_default=True, help="In-flight window.")
@click.option("--synchronous", type=click.Choice(["full", "normal"]), default="full", show_default=True)
@click.option("--crop-bytes", type=int, default=0, show_default=True, help="Add a face crop of about this size.")
@click.option(
    "--encrypt/--no-encrypt",
    default=True,
    show_default=True,
    help="Seal payloads at rest as a unit does (protect.encrypt).",
)
@click.option(
    "--workdir", type=click.Path(file_okay=False, path_type=Path), help="Keep files here (default: a temp dir)."
)
def bench_outbox(
    json_path: Path | None,
    results: int,
    concurrent: int,
    inflight: int,
    synchronous: str,
    crop_bytes: int,
    encrypt: bool,
    workdir: Path | None,
) -> None:
    """Results/s drained at QoS 1 to a local Mosquitto, and enqueue latency (p50/p99)."""
    require_harness("outbox")
    from ...bench import outbox

    wd = _workdir(workdir)
    f = outbox.run(
        wd,
        results=results,
        concurrent=concurrent,
        inflight=inflight,
        synchronous="normal" if synchronous == "normal" else "full",
        crop_bytes=crop_bytes,
        encrypt=encrypt,
        say=lambda s: click.echo(s, err=True),
    )
    click.echo(
        f"Outbox to a local Mosquitto at QoS 1: {results} + {concurrent} results of "
        f"{f['payload_bytes_mean']:.0f} bytes (crop {f['crop_jpeg_bytes']} JPEG bytes), window {inflight}, "
        f"synchronous={synchronous}, {'sealed' if encrypt else 'plaintext'} at rest"
    )
    e, c = f["enqueue"], f["concurrent"]["enqueue_ms"]
    click.echo(
        report.table(
            ["phase", "results/s", "enqueue p50 ms", "p95 ms", "p99 ms", "max ms"],
            [
                ["enqueue only", e["results_per_s"], e["p50"], e["p95"], e["p99"], e["max"]],
                ["drain only", f["drain"]["results_per_s"], "", "", "", ""],
                ["enqueue + drain", f["concurrent"]["results_per_s"], c["p50"], c["p95"], c["p99"], c["max"]],
            ],
        )
    )
    d = f["delivery"]
    click.echo(
        f"delivered: sent {d['sent']}, stored {d['stored']}, lost {d['lost']}, "
        f"duplicates stored {d['duplicates_stored']}; peak RSS {f['peak_rss_mb']} MiB"
    )
    report.write_json(json_path, "outbox", f)
    if d["lost"] or d["duplicates_stored"]:
        raise click.exceptions.Exit(1)


@click.command("faults")
@json_option
@click.option("--faults", type=int, default=100, show_default=True, help="Faults to inject in total.")
@click.option("--rate", type=float, default=200.0, show_default=True, help="Results stored per second meanwhile.")
@click.option(
    "--kinds",
    default="broker_restart,publisher_kill,link_drop,disk_full,corrupt_row,hostile_unit",
    show_default=True,
    help="Fault kinds, comma-separated (injected in turn, shuffled).",
)
@click.option(
    "--disk",
    type=click.Choice(["auto", "tmpfs", "page_cap"]),
    default="auto",
    show_default=True,
    help="Full disk: a real tmpfs (needs root) or SQLite's max_page_count; auto tries tmpfs first.",
)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option(
    "--workdir", type=click.Path(file_okay=False, path_type=Path), help="Keep files here (default: a temp dir)."
)
def bench_faults(
    json_path: Path | None, faults: int, rate: float, kinds: str, disk: str, seed: int, workdir: Path | None
) -> None:
    """Inject faults while results flow; count what the receiver stored: lost and duplicates must be 0."""
    require_harness("faults")
    from ...bench import faults as campaign

    wd = _workdir(workdir)
    kinds_t = tuple(k.strip() for k in kinds.split(",") if k.strip())
    f = campaign.run(
        wd, faults=faults, rate=rate, kinds=kinds_t, seed=seed, disk=disk, say=lambda s: click.echo(s, err=True)
    )
    click.echo(
        f"Fault campaign: {f['faults_injected']} faults in {f['seconds']} s at {rate:g} results/s "
        f"(full disk by {f['disk_full_mode']}), files in {wd}"
    )
    click.echo(report.table(["fault", "injected"], [[k, v] for k, v in sorted(f["faults_by_kind"].items())]))
    click.echo(
        report.table(
            [
                "results sent",
                "stored once",
                "quarantined, not sent",
                "lost",
                "altered",
                "duplicates stored",
                "redeliveries absorbed",
            ],
            [
                [
                    f["results_sent"],
                    f["results_stored"],
                    f["quarantined_undelivered"],
                    f["lost"],
                    f["altered"],
                    f["duplicates_stored"],
                    f["redeliveries_absorbed"],
                ]
            ],
        )
    )
    click.echo(
        f"rows corrupted on disk {f['corrupted_rows']}: quarantined {f['quarantined']}, delivered intact "
        f"from memory before the damage {f['corrupted_but_delivered_intact']}; quarantined rows the campaign "
        f"did not corrupt: {f['quarantined_not_corrupted_by_campaign']}"
    )
    click.echo(
        f"results refused while the disk was full, then retried: {f['disk_full_refusals']}; publisher "
        f"processes started {f['publisher_starts']}, broker starts {f['broker_starts']}, link cuts {f['link_cuts']}"
    )
    if f["faults_by_kind"].get("hostile_unit"):
        click.echo(
            f"hostile unit: {f.get('hostile_poison_sent', 0)} poison messages sent, "
            f"{f['malformed_at_ingest']} rejected by the ingest (retained ones again on each resubscribe), "
            f"ingest exits {f['ingest_exits']}; subscriptions granted {f.get('hostile_subscriptions_granted', 0)} "
            f"of {f.get('hostile_subscriptions_tried', 0)}, other units' results seen "
            f"{f.get('hostile_results_seen', 0)}, client-id takeovers tried {f.get('hostile_client_id_attempts', 0)}"
        )
    report.write_json(json_path, "faults", f)
    bad = (
        f["lost"]
        or f["altered"]
        or f["duplicates_stored"]
        or f["phantom"]
        or not f["drained"]
        or f["quarantined_not_corrupted_by_campaign"]
        or f["ingest_exits"]
        or f.get("hostile_subscriptions_granted")
        or f.get("hostile_results_seen")
    )
    if bad:
        raise click.exceptions.Exit(1)
