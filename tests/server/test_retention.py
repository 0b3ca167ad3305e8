"""Retention at the centre (issue 15 item 5): what a purge deletes and what it keeps (confirmed
identifications, open cases), face crops removed ahead of their results, the export written before the
deletion and holding exactly what went, the audit entry, the dry run that changes nothing, and the audit
chain verifying afterwards; on SQLite and on a throwaway PostgreSQL cluster."""

from __future__ import annotations

import hashlib
import json
import random
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from sqlalchemy import func, select, text

from edgeface.cli.main import cli
from edgeface.errors import EdgefaceError
from edgeface.mqtt.payloads import crop_payload
from edgeface.server import audit, auth, case_state, retention
from edgeface.server.db import Database
from edgeface.server.ingest import DbResultStore
from edgeface.server.retention_export import read_jsonl
from edgeface.server.review import decide
from edgeface.server.tables import audit_log, results, reviews
from edgeface.testing.mqttload import sample_result

from .conftest import PASSWORD
from .test_migrations import postgres  # noqa: F401  (the module's PostgreSQL cluster fixture)

DAY = 86400.0
# What the tests' retention is: undecided results 30 days, rejected/unknown 5 days after the decision,
# crops 7 days, confirmed identifications kept, open cases kept.
POLICY = retention.Policy(results_days=30, reviewed_days=5, crops_days=7)


def face_crop(lfw_root: Path, person: str = "Aaron_Eckhart") -> dict[str, Any]:
    path = next((lfw_root / "images" / person).glob("*.jpg"))
    rgb = np.asarray(Image.open(path).convert("RGB"))[70:180, 70:180]
    return crop_payload(rgb, max_bytes=20_000)


@dataclass
class Scene:
    """Results of every kind, received ``now - N days``; decisions made at ``now``; purge runs ``later``."""

    now: float
    ids: dict[str, str]
    docs: dict[str, dict[str, Any]]

    @property
    def later(self) -> float:
        return self.now + 10 * DAY


def build_scene(db: Database, lfw_root: Path) -> Scene:
    now = time.time()
    rng = random.Random(15)
    crop = face_crop(lfw_root)
    store = DbResultStore(db)
    kinds = {
        # name: (days before now it arrived, crop, case tag)
        "old_pending": (60, False, None),  # 70 days at the purge: past 30 -> goes
        "fresh_pending": (1, False, None),  # 11 days: stays
        "fresh_pending_crop": (1, True, None),  # 11 days: crop past 7 -> crop removed, result stays
        "new_crop": (-5, True, None),  # 5 days at the purge: crop stays
        "old_confirmed": (60, True, None),  # confirmed: kept with its crop
        "old_rejected": (60, True, None),  # rejected now, 10 days before the purge: past 5 -> goes
        "old_unknown_recent": (60, False, None),  # decided at the purge time - 2 days: stays
        "old_open_case": (60, True, "BODY-17"),  # case open: kept whole, crop too
        "old_closed_case": (60, False, "CASE-2"),  # closed now: 10 days of 30 counted -> stays
        "old_awaiting": (60, False, None),  # awaiting a second reviewer: undecided, past 30 -> goes
    }
    ids: dict[str, str] = {}
    docs: dict[str, dict[str, Any]] = {}
    for name, (days, with_crop, tag) in kinds.items():
        doc = sample_result("unit-a", rng, match_share=1.0, crop=crop if with_crop else None)
        if tag:
            doc["case"] = {"tag": tag, "source": "trigger"}
        store.add([doc], received_at=now - days * DAY)
        ids[name], docs[name] = doc["id"], doc
    with db.write() as conn:
        rita = auth.create_user(conn, "rita", PASSWORD, ["reviewer"])
        decide(conn, ids["old_confirmed"], rita, "confirm", None, "it is him", two_person=False)
        decide(conn, ids["old_rejected"], rita, "reject", None, "not him: scar on the left", two_person=False)
        decide(conn, ids["old_unknown_recent"], rita, "unknown", None, "", two_person=False)
        decide(conn, ids["old_awaiting"], rita, "confirm", None, "first of two", two_person=True)
        conn.execute(
            results.update().where(results.c.id == ids["old_unknown_recent"]).values(reviewed_at=now + 8 * DAY)
        )
        case_state.close_case(conn, "CASE-2", "ada", "body returned to the family")
    return Scene(now, ids, docs)


def snapshot(db: Database) -> dict[str, Any]:
    with db.read() as conn:
        rows = {r.id: (r.payload, r.review_status, r.crop_purged_at) for r in conn.execute(select(results))}
        n_reviews = conn.execute(select(func.count()).select_from(reviews)).scalar_one()
        n_audit = conn.execute(select(func.count()).select_from(audit_log)).scalar_one()
    return {"results": rows, "reviews": n_reviews, "audit": n_audit}


GOES = {"old_pending", "old_rejected", "old_awaiting"}
CROP_GOES = {"fresh_pending_crop"}


def check_purge(db: Database, lfw_root: Path, tmp: Path) -> None:
    s = build_scene(db, lfw_root)
    before = snapshot(db)
    with db.read() as conn:
        v0 = audit.verify(conn)
    rep = retention.purge(db, POLICY, export_dir=tmp / "exports", actor="cli", now=s.later)

    # what goes, what stays
    after = snapshot(db)
    gone = {n for n, i in s.ids.items() if i not in after["results"]}
    assert gone == GOES
    assert {d.id for d in rep.plan.results} == {s.ids[n] for n in GOES}
    assert rep.plan.kept_case == 2  # the open case and the recently closed one
    assert rep.plan.kept_confirmed == 1
    with db.read() as conn:
        left = {r.result_id for r in conn.execute(select(reviews.c.result_id))}
    assert left == {s.ids["old_confirmed"], s.ids["old_unknown_recent"]}  # review records went with their results
    assert after["reviews"] == before["reviews"] - 2

    # crops: removed from the due unconfirmed result only; everything else in its payload as it was
    for name in s.ids.keys() - GOES:
        payload, _, purged_at = after["results"][s.ids[name]]
        doc = json.loads(payload)
        if name in CROP_GOES:
            assert "crop" not in doc and purged_at == pytest.approx(s.later)
            assert doc == {k: v for k, v in s.docs[name].items() if k != "crop"}
        else:
            assert payload == before["results"][s.ids[name]][0] and purged_at is None
    assert "crop" in json.loads(after["results"][s.ids["old_confirmed"]][0])
    assert "crop" in json.loads(after["results"][s.ids["old_open_case"]][0])

    # the export holds exactly what went, as it was stored
    assert rep.export is not None and rep.export.parent == tmp / "exports"
    assert stat.S_IMODE(rep.export.stat().st_mode) == 0o700
    manifest_bytes = (rep.export / "manifest.json").read_bytes()
    manifest = json.loads(manifest_bytes)
    for name, meta in manifest["files"].items():
        data = (rep.export / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == meta["sha256"] and len(data) == meta["bytes"]
        assert stat.S_IMODE((rep.export / name).stat().st_mode) == 0o600
    exported = {r["id"]: r for r in read_jsonl(rep.export / "results.jsonl")}
    assert set(exported) == {s.ids[n] for n in GOES}
    for name in GOES:
        assert json.dumps(exported[s.ids[name]]["payload"], sort_keys=True) == json.dumps(s.docs[name], sort_keys=True)
    rejected = exported[s.ids["old_rejected"]]
    assert rejected["review_status"] == "rejected" and rejected["payload"]["crop"] == s.docs["old_rejected"]["crop"]
    assert [(r["reviewer"], r["verdict"], r["comment"]) for r in rejected["reviews"]] == [
        ("rita", "reject", "not him: scar on the left")
    ]
    crops = read_jsonl(rep.export / "crops.jsonl")
    assert [(c["id"], c["crop"]) for c in crops] == [
        (s.ids["fresh_pending_crop"], s.docs["fresh_pending_crop"]["crop"])
    ]
    assert manifest["results"] == 3 and manifest["crops"] == 1 and manifest["reviews"] == 2

    # one audit entry naming the export, and the chain still verifies (entries about purged results too)
    with db.read() as conn:
        entry = audit.entries(conn, limit=1)[0]
        v = audit.verify(conn)
    assert (entry.seq, entry.action, entry.subject) == (rep.audit_seq, "retention.purge", str(rep.export))
    assert entry.details["export_manifest_sha256"] == hashlib.sha256(manifest_bytes).hexdigest()
    assert entry.details["result_ids_sha256"] == retention.ids_digest([s.ids[n] for n in GOES])
    assert entry.details["results"] == 3 and entry.details["crops"] == 1
    assert entry.details["by_status"] == {"pending": 1, "rejected": 1, "awaiting_second": 1}
    assert v.ok and v.entries == v0.entries + 1, v.problems
    assert after["audit"] == before["audit"] + 1

    # a second run at the same time finds nothing more; 30 days on, the closed case's result goes too
    assert retention.purge(db, POLICY, export_dir=None, now=s.later).plan.results == []
    rep3 = retention.purge(db, POLICY, export_dir=None, now=s.now + 31 * DAY)
    assert s.ids["old_closed_case"] in {d.id for d in rep3.plan.results}
    assert s.ids["old_open_case"] not in {d.id for d in rep3.plan.results}


def test_purge_sqlite(db: Database, lfw_root: Path, tmp_path: Path) -> None:
    check_purge(db, lfw_root, tmp_path)


def test_purge_postgresql(postgres: str, lfw_root: Path, tmp_path: Path) -> None:  # noqa: F811
    db = Database(postgres)
    try:
        with db.write() as conn:  # the module's cluster is shared: start from an empty schema
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        db.migrate()
        check_purge(db, lfw_root, tmp_path)
    finally:
        db.dispose()


def cli_args(db: Database, *more: str) -> list[str]:
    return ["--set", f"server.database_url={db.url.render_as_string(hide_password=False)}", *more]


def retention_sets(tmp: Path) -> list[str]:
    return [
        "--set",
        "server.retention.results_days=30",
        "--set",
        "server.retention.reviewed_days=5",
        "--set",
        "server.retention.crops_days=7",
        "--set",
        f"server.data_dir={tmp / 'data'}",
    ]


def test_dry_run_deletes_nothing_and_lists_what_the_purge_deletes(db: Database, lfw_root: Path, tmp_path: Path) -> None:
    s = build_scene(db, lfw_root)
    # the CLI purges at the present: age the scene by moving its times back 10 days
    with db.write() as conn:
        conn.execute(
            results.update().values(
                received_at=results.c.received_at - 10 * DAY, reviewed_at=results.c.reviewed_at - 10 * DAY
            )
        )
        conn.exec_driver_sql("UPDATE case_closures SET closed_at = closed_at - 864000")
    before = snapshot(db)
    r = CliRunner().invoke(cli, cli_args(db, *retention_sets(tmp_path), "server", "purge", "--dry-run", "--json"))
    assert r.exit_code == 0, r.output
    plan = json.loads(r.stdout)
    assert plan["dry_run"] is True and set(plan["result_ids"]) == {s.ids[n] for n in GOES}
    assert plan["crop_ids"] == [s.ids["fresh_pending_crop"]]
    assert snapshot(db) == before  # nothing deleted, nothing stripped, no audit entry
    assert not (tmp_path / "data" / "purged").exists()  # nothing exported

    text_run = CliRunner().invoke(cli, cli_args(db, *retention_sets(tmp_path), "server", "purge", "--dry-run"))
    assert text_run.exit_code == 0 and "would delete 3 results" in text_run.output, text_run.output
    assert s.ids["old_pending"] in text_run.output and "nothing deleted (dry run)" in text_run.output
    assert snapshot(db) == before

    r = CliRunner().invoke(cli, cli_args(db, *retention_sets(tmp_path), "server", "purge", "--json"))
    assert r.exit_code == 0, r.output
    done = json.loads(r.stdout)
    assert done["dry_run"] is False and done["results"] == 3 and done["crops"] == 1
    [batch] = done["batches"]  # 3 results and 1 crop: one batch of the default 5000
    assert Path(batch["export"]).parent == tmp_path / "data" / "purged"  # the default: <data_dir>/purged
    assert {x["id"] for x in read_jsonl(Path(batch["export"]) / "results.jsonl")} == set(plan["result_ids"])
    assert set(snapshot(db)["results"]) == set(before["results"]) - set(plan["result_ids"])


def test_no_days_set_deletes_nothing(db: Database, lfw_root: Path, tmp_path: Path) -> None:
    build_scene(db, lfw_root)
    before = snapshot(db)
    r = CliRunner().invoke(cli, cli_args(db, "--set", f"server.data_dir={tmp_path}", "server", "purge"))
    assert r.exit_code == 0, r.output
    assert "deleted 0 results" in r.output and "everything is kept" in r.output
    after = snapshot(db)
    assert after["results"] == before["results"] and after["audit"] == before["audit"] + 1  # the run is audited


def test_export_failure_deletes_nothing(db: Database, lfw_root: Path, tmp_path: Path) -> None:
    s = build_scene(db, lfw_root)
    before = snapshot(db)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the export folder should go")
    with pytest.raises(EdgefaceError, match="purge export folder"):
        retention.purge(db, POLICY, export_dir=blocker, now=s.later)
    assert snapshot(db) == before


def test_limit_leaves_the_rest_for_the_next_run(db: Database, lfw_root: Path, tmp_path: Path) -> None:
    s = build_scene(db, lfw_root)
    first = retention.purge(db, POLICY, export_dir=tmp_path, now=s.later, limit=2)
    assert first.plan.more and len(first.plan.results) == 2
    assert [d.id for d in first.plan.results] == [s.ids["old_pending"], s.ids["old_rejected"]]  # oldest first
    second = retention.purge(db, POLICY, export_dir=tmp_path, now=s.later, limit=2)
    assert not second.plan.more and [d.id for d in second.plan.results] == [s.ids["old_awaiting"]]
    assert first.export != second.export


def test_purge_all_runs_batches_until_nothing_is_due(db: Database, lfw_root: Path, tmp_path: Path) -> None:
    s = build_scene(db, lfw_root)
    before = snapshot(db)
    reports = retention.purge_all(db, POLICY, export_dir=tmp_path, now=s.later, limit=1)
    assert [len(r.plan.results) for r in reports] == [1, 1, 1] and [r.plan.more for r in reports] == [True, True, False]
    assert {d.id for r in reports for d in r.plan.results} == {s.ids[n] for n in GOES}
    # crops only once every due result had its batch: a result that goes is never stripped of its crop first
    assert [[d.id for d in r.plan.crops] for r in reports] == [[], [], [s.ids["fresh_pending_crop"]]]
    rejected = next(r for r in reports if s.ids["old_rejected"] in {d.id for d in r.plan.results})
    assert rejected.export is not None
    [row] = read_jsonl(rejected.export / "results.jsonl")
    assert row["payload"]["crop"] == s.docs["old_rejected"]["crop"]
    assert len({r.export for r in reports}) == 3 and [r.audit_seq - reports[0].audit_seq for r in reports] == [0, 1, 2]
    assert snapshot(db)["audit"] == before["audit"] + 3  # one entry per batch
    total = retention.Plan.combined([r.plan for r in reports])
    assert len(total.results) == 3 and len(total.crops) == 1 and total.reviews == 2 and not total.more
    assert (total.kept_case, total.kept_case_crops, total.kept_confirmed) == (2, 1, 1)  # as one run counts them


def test_close_and_reopen_case_cli(db: Database, lfw_root: Path, tmp_path: Path) -> None:
    s = build_scene(db, lfw_root)
    runner = CliRunner()
    r = runner.invoke(cli, cli_args(db, "server", "close-case", " BODY-17 ", "--note", "identified, released"))
    assert r.exit_code == 0 and "case BODY-17 closed (1 results carry it)" in r.output, r.output
    assert "warning" not in r.output
    again = runner.invoke(cli, cli_args(db, "server", "close-case", "BODY-17"))
    assert again.exit_code == 1 and "already closed" in again.output
    with db.read() as conn:
        assert "BODY-17" in case_state.closed_cases(conn)
        entry = audit.entries(conn, limit=1)[0]
    assert (entry.action, entry.subject, entry.details) == (
        "case.close",
        "BODY-17",
        {"note": "identified, released", "results": 1},
    )
    # closed today: its result's 30 days start now; 31 days on it goes
    due = retention.purge(db, POLICY, export_dir=None, now=s.now + 31 * DAY)
    assert s.ids["old_open_case"] in {d.id for d in due.plan.results}

    assert runner.invoke(cli, cli_args(db, "server", "reopen-case", "CASE-2")).exit_code == 0
    with db.read() as conn:
        assert "CASE-2" not in case_state.closed_cases(conn)
        assert audit.entries(conn, limit=1)[0].action == "case.reopen"
    kept = retention.purge(db, POLICY, export_dir=None, now=s.now + 400 * DAY)
    assert s.ids["old_closed_case"] not in {d.id for d in kept.plan.results}  # open again: kept
    r = runner.invoke(cli, cli_args(db, "server", "reopen-case", "NO-SUCH"))
    assert r.exit_code == 1 and "is not closed" in r.output
    r = runner.invoke(cli, cli_args(db, "server", "close-case", "BODY  71"))  # mistyped: closed, with a warning
    assert r.exit_code == 0 and "case BODY 71 closed (0 results carry it)" in r.output and "warning" in r.output
    bad = runner.invoke(cli, cli_args(db, "server", "close-case", "A\x07B"))
    assert bad.exit_code == 1 and "control characters" in bad.output


def test_confirmed_days_and_open_cases_off(db: Database, lfw_root: Path) -> None:
    s = build_scene(db, lfw_root)
    policy = retention.Policy(results_days=30, confirmed_days=5, keep_open_cases=False)
    p = retention.purge(db, policy, export_dir=None, now=s.later).plan
    going = {d.id for d in p.results}
    assert s.ids["old_confirmed"] in going  # confirmed 10 days before: past 5
    assert {s.ids["old_open_case"], s.ids["old_closed_case"]} <= going  # cases not kept: their own 70 days count
    assert p.kept_case == 0


def test_export_option_and_no_export(db: Database, lfw_root: Path, tmp_path: Path) -> None:
    s = build_scene(db, lfw_root)
    with db.write() as conn:  # the CLI purges at the present: age the scene by 10 days
        conn.execute(results.update().values(received_at=results.c.received_at - 10 * DAY))
    runner = CliRunner()
    both = runner.invoke(
        cli, cli_args(db, "server", "purge", "--export", str(tmp_path / "x"), "--no-export"), catch_exceptions=False
    )
    assert both.exit_code == 2 and "exclude each other" in both.output
    r = runner.invoke(cli, cli_args(db, *retention_sets(tmp_path), "server", "purge", "--export", str(tmp_path / "x")))
    assert r.exit_code == 0, r.output
    folder = next((tmp_path / "x").iterdir())
    assert f"exported first to {folder}" in r.output  # says where
    assert s.ids["old_pending"] in (folder / "results.jsonl").read_text()

    with db.write() as conn:  # something due again: the remaining unconfirmed results 100 days older
        conn.execute(
            results.update()
            .where(results.c.review_status == "pending")
            .values(received_at=results.c.received_at - 100 * DAY)
        )
    r = runner.invoke(cli, cli_args(db, *retention_sets(tmp_path), "server", "purge", "--no-export"))
    assert r.exit_code == 0 and "not exported (--no-export)" in r.output, r.output
    with db.read() as conn:
        entry = audit.entries(conn, limit=1)[0]
    assert entry.action == "retention.purge" and entry.subject == "no export"
    assert entry.details["export"] is None and entry.details["results"] >= 2
    assert [p.name for p in (tmp_path / "x").iterdir()] == [folder.name]  # no second export anywhere
    assert not (tmp_path / "data" / "purged").exists()


def test_review_page_says_the_crop_was_removed(db: Database, as_reviewer: Any, lfw_root: Path) -> None:
    doc = sample_result("unit-a", random.Random(3), match_share=1.0, crop=face_crop(lfw_root))
    DbResultStore(db).add([doc], received_at=time.time() - 20 * DAY)
    page = as_reviewer.get(f"/review/{doc['id']}").get_data(as_text=True)
    assert 'id="probe"' in page and "crop-purged" not in page
    assert as_reviewer.get(f"/review/{doc['id']}/crop.jpg").status_code == 200
    rep = retention.purge(db, POLICY, export_dir=None)
    assert [d.id for d in rep.plan.crops] == [doc["id"]] and rep.plan.results == []
    page = as_reviewer.get(f"/review/{doc['id']}").get_data(as_text=True)
    assert 'id="crop-purged"' in page and 'id="probe"' not in page and "include_crop is off" not in page
    assert as_reviewer.get(f"/review/{doc['id']}/crop.jpg").status_code == 404


def test_case_tag_read_from_the_stored_text() -> None:
    """The scan reads a payload's case tag without decoding its crop; text that only looks like a key does
    not count, and a payload not written compactly is decoded whole."""
    doc = sample_result("unit-a", random.Random(9), match_share=1.0)
    doc["source"] = 'cam "case":{"tag":"FAKE"}'  # inside a string: its quotes are escaped in the JSON text
    text_ = json.dumps(doc, separators=(",", ":"))
    assert case_state.case_tag_of(text_) is None
    doc["case"] = {"tag": "BODY-3", "source": "qr"}
    assert case_state.case_tag_of(json.dumps(doc, separators=(",", ":"))) == "BODY-3"
    assert case_state.case_tag_of(json.dumps(doc, indent=1)) == "BODY-3"
    doc["case"] = "CASE-9"  # a plain string tag
    assert case_state.case_tag_of(json.dumps(doc)) == "CASE-9"
    assert case_state.case_tag_of(None) is None


def test_bench_purge_small(tmp_path: Path) -> None:
    out = tmp_path / "purge.json"
    args = ["bench", "purge", "--results", "300", "--crop-bytes", "4000", "--batch", "100", "--out", str(out)]
    r = CliRunner().invoke(cli, [*args, "--workdir", str(tmp_path / "wd")])
    assert r.exit_code == 0, r.output
    fig = json.loads(out.read_text())
    assert fig["checked"] is True and fig["deleted"] == 240 and fig["crops_removed"] == 30 and fig["batches"] == 3
    assert fig["dry_run_due"] == 240 and fig["longest_batch_s"] <= fig["purge_s"]
    assert len(list((tmp_path / "wd" / "exports").iterdir())) == 3
