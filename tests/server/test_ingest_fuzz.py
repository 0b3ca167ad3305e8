"""The ingest fuzz campaign, small: hypothesis-generated good, hostile and malformed messages (results and
statuses, retained and not) through a real mosquitto into the server's own ingest workers. No worker
stops, every good result is stored once, every bad message is in the rejected table with its reason."""

from __future__ import annotations

from pathlib import Path

from edgeface.bench.ingest_fuzz import GOOD_UNITS, run_campaign


def test_no_message_stops_ingestion_and_every_message_is_accounted_for(tmp_path: Path) -> None:
    figures = run_campaign(tmp_path, messages=600, workers=2, seed=3, batch=200)
    assert figures["problems"] == []
    assert figures["workers_alive"] == 2
    # The campaign must really have exercised both sides: good results stored, poison rejected,
    # retained poison delivered again after the workers reconnected.
    assert figures["good_results"] > 100 and figures["good_lost"] == 0
    assert figures["rejected"] > 100 and figures["rejected_by_kind"].get("schema", 0) > 0
    assert figures["retained_poison_redelivered"] > 0
    assert any(k.startswith("results:hostile:store") for k in figures["sent"])  # schema-valid hostile results
    assert set(GOOD_UNITS)  # the good units are the ones whose results must never be lost


def test_the_benchmark_command_writes_its_figures(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from edgeface.cli.main import cli

    out = tmp_path / "fuzz.json"
    r = CliRunner().invoke(
        cli,
        [
            "bench",
            "ingest-fuzz",
            "--messages",
            "150",
            "--workers",
            "1",
            "--out",
            str(out),
            "--workdir",
            str(tmp_path / "w"),
        ],
    )
    assert r.exit_code == 0, r.output
    figures = json.loads(out.read_text())
    assert figures["messages"] >= 150 and figures["problems"] == [] and "rejected rows" in r.output
    # --json is a flag, as everywhere: one JSON object on stdout, the table on stderr
    r = CliRunner().invoke(
        cli, ["bench", "ingest-fuzz", "--messages", "60", "--workers", "1", "--json", "--workdir", str(tmp_path / "w2")]
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["benchmark"] == "ingest-fuzz" and doc["problems"] == [] and "rejected rows" in r.stderr
