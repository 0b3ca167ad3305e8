"""The fleet page's command buttons and the server's command log, without a broker (the broker path, with a
real unit, is tests/daemon/test_commands_centre.py): who may send what, numbering, signing, the audit entries,
a reply recorded once, and a refusal of a command this server never issued."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import select

from edgeface.gallery import signing
from edgeface.mqtt import signed
from edgeface.server import audit, auth, commands
from edgeface.server.tables import device_commands

from .conftest import Browser


def _key(config: Any) -> Any:
    path = Path(config.server.signing_key)
    signing.generate_keypair(path, path.with_suffix(".pub"))
    return signing.load_public_key(path.with_suffix(".pub"))


def _rows(db: Any) -> list[Any]:
    with db.read() as conn:
        return list(conn.execute(select(device_commands).order_by(device_commands.c.seq)))


def test_the_fleet_buttons_issue_numbered_signed_commands_and_audit_them(
    config: Any, db: Any, as_admin: Browser, as_reviewer: Browser
) -> None:
    public = _key(config)
    assert as_admin.post("/fleet/devices/unit-a/command", {"command": "lock"}).status_code == 404  # unknown
    with db.write() as conn:
        auth.issue_device_token(conn, "unit-a")
    assert as_reviewer.post("/fleet/devices/unit-a/command", {"command": "lock"}).status_code == 403
    assert as_admin.post("/fleet/devices/unit-a/command", {"command": "reboot"}).status_code == 400
    assert as_admin.post("/fleet/devices/unit-a/command", {"command": "wipe"}).status_code == 400  # not confirmed
    assert as_admin.post("/fleet/devices/unit-a/command", {"command": "wipe", "confirm": "unit-b"}).status_code == 400
    assert _rows(db) == []
    for name in ("lock", "unlock"):
        assert as_admin.post("/fleet/devices/unit-a/command", {"command": name}).status_code == 302
    assert as_admin.post("/fleet/devices/unit-a/command", {"command": "wipe", "confirm": "unit-a"}).status_code == 302
    rows = _rows(db)
    assert [(r.command, r.seq, r.issued_by, r.state) for r in rows] == [
        ("lock", 1, "ada", "unsent"),  # no broker configured: recorded as not sent, with why
        ("unlock", 2, "ada", "unsent"),
        ("wipe", 3, "ada", "unsent"),
    ]
    for r in rows:
        doc = json.loads(r.document)
        assert signed.check(doc, device_id="unit-a", trusted=[public], highest_seq=r.seq - 1) == r.seq
    with db.read() as conn:
        issued = audit.entries(conn, action="command.issue")
        sends = audit.entries(conn, action="command.send")
    assert sorted(e.details["seq"] for e in issued) == [1, 2, 3] and {e.subject for e in issued} == {"unit-a"}
    assert [e.details["sent"] for e in sends] == [False] * 3
    page = as_admin.get("/fleet").get_data(as_text=True)
    assert "wipe #3: unsent" in page


def test_a_reply_is_recorded_once_and_a_refusal_of_an_unknown_command_is_audited(config: Any, db: Any) -> None:
    _key(config)
    with db.write() as conn:
        doc = commands.issue(conn, config, "unit-a", "lock", "ada")
    reply = signed.reply_payload(device_id="unit-a", command=doc, outcome="applied", detail="locked (lock)")
    with db.write() as conn:
        assert commands.record_reply(conn, reply) == "command.applied"
        assert commands.record_reply(conn, reply) == "duplicate"  # redelivered by the broker
    late = signed.reply_payload(device_id="unit-a", command=doc, outcome="refused", reason="replay")
    forged = signed.reply_payload(
        device_id="unit-a", command={"id": "not-ours", "command": "wipe"}, outcome="refused", reason="unsigned"
    )
    with db.write() as conn:
        assert commands.record_reply(conn, late) == "command.refused"
        assert commands.record_reply(conn, forged) == "command.refused"
        refused = audit.entries(conn, action="command.refused")
        applied = audit.entries(conn, action="command.applied")
    (row,) = _rows(db)
    assert (row.state, row.reason, row.detail) == ("applied", "", "locked (lock)")  # the first outcome stays
    assert len(applied) == 1 and applied[0].actor == "unit:unit-a"
    assert {(e.details["command_id"], e.details["reason"], e.details["issued_here"]) for e in refused} == {
        (doc["id"], "replay", True),
        ("not-ours", "unsigned", False),
    }


def test_the_command_line_sends_commands_and_revokes_and_says_what_did_not_happen(config: Any, db: Any) -> None:
    from click.testing import CliRunner

    from edgeface.cli.main import cli

    _key(config)
    sets = [
        f"--set=server.database_url={config.server.database_url}",
        f"--set=server.signing_key={config.server.signing_key}",
    ]
    runner = CliRunner()
    r = runner.invoke(cli, [*sets, "server", "command", "unit-a", "wipe"])
    assert r.exit_code == 2 and "--yes" in r.output and _rows(db) == []
    r = runner.invoke(cli, [*sets, "server", "command", "unit-a", "capture", "--tag", "BODY-7"])
    assert r.exit_code == 1 and "capture #1" in r.output and "not sent: no broker configured" in r.output
    (row,) = _rows(db)
    assert json.loads(row.document)["args"] == {"tag": "BODY-7"} and row.issued_by == "cli"
    with db.write() as conn:
        token = auth.issue_device_token(conn, "unit-a")
    r = runner.invoke(cli, [*sets, "server", "revoke", "unit-a"])
    assert r.exit_code == 1 and "gallery downloads refused" in r.output and "NOT cut off" in r.output
    with db.read() as conn:
        assert not auth.check_device(conn, "unit-a", token)
        assert [e.details["ok"] for e in audit.entries(conn, action="device.broker_cutoff")] == [False]
