"""A small fault campaign (CI size): every kind of fault twice while results flow; nothing lost or stored
twice. ``edgeface bench faults --faults 100`` runs the full one."""

from __future__ import annotations

from pathlib import Path

from edgeface.bench import faults


def test_small_fault_campaign_loses_nothing_and_stores_nothing_twice(tmp_path: Path) -> None:
    f = faults.run(tmp_path / "campaign", faults=12, rate=80.0, seed=7)
    assert f["faults_injected"] == 12
    assert f["faults_by_kind"] == {k: 2 for k in faults.KINDS}
    assert f["drained"] and f["pending_left"] == 0
    assert f["lost"] == 0, f.get("lost_ids_sample")
    # The results table's id is its primary key, so a result cannot be stored twice (duplicates_stored is
    # always 0); what can go wrong is a result changed on the way or stored that was never sent.
    assert f["altered"] == 0 and f["phantom"] == 0
    # Every stored result arrived once; the corrupted rows were quarantined, nothing else was.
    assert f["results_stored"] + f["quarantined_undelivered"] == f["results_sent"]
    assert f["quarantined_not_corrupted_by_campaign"] == 0
    assert f["corrupted_rows"] == 2
    # The faults bit: results were refused on the full disk, the publisher resent after kill -9.
    assert f["disk_full_refusals"] > 0
    assert f["publisher_starts"] == 3 and f["broker_starts"] == 3
    assert f["redeliveries_absorbed"] is not None
    # The hostile unit got nothing and stopped nothing: its subscriptions refused, its poison rejected.
    assert f["hostile_subscriptions_tried"] == 6 and f["hostile_subscriptions_granted"] == 0
    assert f["hostile_results_seen"] == 0 and f["ingest_exits"] == 0
    assert f["hostile_poison_sent"] == 14 and f["malformed_at_ingest"] >= 14
