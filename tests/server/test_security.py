"""Access control on every route (enumerated from the app, so new routes are covered), CSRF, login
rate limits, sessions, device credentials on the bundle endpoint, and a tampered audit log."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from edgeface.cli.main import cli
from edgeface.server import audit, auth
from edgeface.server.access import API, DEVICE, PUBLIC, rule_of

from .conftest import PASSWORD, Browser, csrf_of
from .test_migrations import postgres  # noqa: F401  (the module's PostgreSQL cluster fixture)

SAMPLE = {"IntegerConverter": 1, "PathConverter": "latest.json"}


def routes(app: Any) -> list[tuple[str, str, str, Any]]:
    """(endpoint, method, url, access) for every rule and method of the app."""
    out = []
    with app.test_request_context():
        from flask import url_for

        for rule in app.url_map.iter_rules():
            args = {a: SAMPLE.get(type(rule._converters[a]).__name__, "x") for a in rule.arguments}
            url = url_for(rule.endpoint, **args)
            for m in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                out.append((rule.endpoint, m, url, rule_of(app.view_functions[rule.endpoint])))
    return out


def call(client: Any, method: str, url: str, **kw: Any) -> Any:
    return client.open(url, method=method, **kw)


def test_every_route_declares_who_may_call_it(app: Any) -> None:
    found = routes(app)
    assert len(found) >= 20
    missing = [(e, m) for e, m, _, acc in found if acc is None]
    assert not missing, f"routes without @access: {missing}"
    public = {e for e, _, _, acc in found if acc.kind == PUBLIC}
    # metrics: its bearer token (test_metrics.py); the API's description (test_api.py)
    assert public == {"login", "healthz", "static", "metrics", "api.openapi_document"}, public


def test_a_route_without_declaration_is_refused(config: Any, db: Any, users: Any) -> None:
    from edgeface.server.app import create_app

    app = create_app(config, db=db, migrate=False)
    app.add_url_rule("/undeclared", "undeclared", lambda: "secret")
    b = Browser(app)
    b.login("ada")
    r = b.get("/undeclared")
    assert r.status_code == 500 and b"secret" not in r.data


def test_unauthenticated_refused_everywhere(app: Any) -> None:
    client = app.test_client()
    for endpoint, method, url, acc in routes(app):
        if acc.kind == PUBLIC:
            continue
        for accept in ("text/html", "application/json"):
            r = call(client, method, url, headers={"Accept": accept})
            if acc.kind == DEVICE:
                assert r.status_code == 401 and "Basic" in r.headers["WWW-Authenticate"], (endpoint, method)
            elif r.status_code == 302:
                assert method == "GET" and r.headers["Location"].startswith("/login"), (endpoint, method)
            else:
                assert r.status_code == 401, (endpoint, method, r.status_code)


def test_wrong_role_refused_everywhere(app: Any, as_reviewer: Browser, as_admin: Browser) -> None:
    checked = 0
    for endpoint, method, url, acc in routes(app):
        if acc.kind != "user":
            continue
        for who, b in (("reviewer", as_reviewer), ("admin", as_admin)):
            if who in acc.roles:
                continue
            r = call(b.client, method, url, data={"csrf_token": b.csrf}, headers={"Accept": "text/html"})
            assert r.status_code == 403, (endpoint, method, who, r.status_code)
            checked += 1
    assert checked >= 10


def test_right_role_passes_the_guard(app: Any, as_reviewer: Browser, as_admin: Browser) -> None:
    """The refusals above are about roles: a holder of the role gets past the guard on every GET."""
    for endpoint, method, url, acc in routes(app):
        if acc.kind != "user" or method != "GET":
            continue
        b = as_reviewer if "reviewer" in acc.roles else as_admin
        r = b.get(url, headers={"Accept": "text/html"})
        assert r.status_code not in (401, 403, 500), (endpoint, r.status_code)
        assert r.status_code != 302 or not r.headers["Location"].startswith("/login"), endpoint


def test_device_credentials_do_not_open_user_routes(app: Any, db: Any) -> None:
    with db.write() as conn:
        token = auth.issue_device_token(conn, "unit-a")
    basic = {"Authorization": "Basic " + base64.b64encode(f"unit-a:{token}".encode()).decode()}
    client = app.test_client()
    for endpoint, method, url, acc in routes(app):
        if acc.kind in ("user", API):
            r = call(client, method, url, headers=basic)
            assert r.status_code == 401, (endpoint, method, r.status_code)


def test_user_session_does_not_open_the_device_route(as_admin: Browser) -> None:
    assert as_admin.get("/bundles/latest.json").status_code == 401


def test_csrf_token_required_on_every_state_change(app: Any, as_reviewer: Browser, as_admin: Browser) -> None:
    checked = 0
    for endpoint, method, url, acc in routes(app):
        if method == "GET" or acc.kind in (DEVICE, API):  # API: bearer tokens, never cookies (test_api.py)
            continue
        if acc.kind == PUBLIC:  # the login form: double-submit cookie
            assert (
                call(app.test_client(), method, url, data={"username": "ada", "password": PASSWORD}).status_code == 400
            )
            continue
        b = as_reviewer if "reviewer" in acc.roles else as_admin
        for data in ({}, {"csrf_token": "wrong"}, {"csrf_token": ""}):
            r = call(b.client, method, url, data=data)
            assert r.status_code == 403, (endpoint, data, r.status_code)
        r = call(b.client, method, url, headers={"X-CSRF-Token": "wrong"})
        assert r.status_code == 403
        checked += 1
    assert checked >= 8
    # the token of another session does not work either
    r = as_reviewer.client.post("/logout", data={"csrf_token": as_admin.csrf})
    assert r.status_code == 403


def test_login_rate_limited_per_user(app: Any, users: Any) -> None:
    b = Browser(app)
    for _ in range(5):
        assert b.login("rita", "wrong password!!").status_code == 401
    r = b.login("rita")  # right password, but locked for the window
    assert r.status_code == 429
    assert Browser(app).login("rob").status_code == 302  # another user from the same address is not locked


def test_login_rate_limited_per_address(app: Any, config: Any, users: Any) -> None:
    b = Browser(app)
    for i in range(config.server.login_max_failures_ip):
        b.login(f"nobody{i}", "wrong password!!")
    assert b.login("rob").status_code == 429


def test_logout_ends_the_session_and_login_rotates_it(app: Any, users: Any) -> None:
    b = Browser(app)
    b.login("rita")
    cookie = b.client.get_cookie("edgeface_session").value
    assert b.get("/review").status_code == 200
    assert b.post("/logout").status_code == 302
    other = app.test_client()
    other.set_cookie("edgeface_session", cookie)
    assert other.get("/review").status_code == 401
    b.login("rita")
    assert b.client.get_cookie("edgeface_session").value != cookie


def test_passwords_are_argon2id_and_sessions_stored_hashed(db: Any, as_reviewer: Browser) -> None:
    with db.read() as conn:
        h = conn.execute(text("SELECT password_hash FROM users WHERE username='rita'")).scalar()
        stored = [r[0] for r in conn.execute(text("SELECT token_hash FROM sessions"))]
    assert h.startswith("$argon2id$")
    cookie = as_reviewer.client.get_cookie("edgeface_session").value
    assert cookie not in stored and hashlib.sha256(cookie.encode()).hexdigest() in stored


def test_security_headers_and_cookie_flags(app: Any, users: Any) -> None:
    b = Browser(app)
    r = b.login("rita")
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    page = b.get("/review")
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY" and page.headers["Cache-Control"] == "private, no-store"


def test_open_redirect_after_login_refused(app: Any, users: Any) -> None:
    b = Browser(app)
    page = b.client.get("/login")
    r = b.client.post(
        "/login",
        data={
            "username": "rita",
            "password": PASSWORD,
            "next": "//evil.example/x",
            "csrf_token": csrf_of(page.get_data(as_text=True)),
        },
    )
    assert r.status_code == 302 and r.headers["Location"] == "/"


# -- the bundle endpoint ----------------------------------------------------------------------------


@pytest.fixture
def published(config: Any) -> bytes:
    pub = config.server.data_dir / "publish"
    (pub / "v0000000001").mkdir(parents=True)
    data = bytes(range(256)) * 40
    (pub / "v0000000001" / "vectors.npy").write_bytes(data)
    (pub / "latest.json").write_text(
        json.dumps({"format": "edgeface-gallery-pointer", "version": 1, "bundle": "v0000000001/", "deltas": {}})
    )
    return data


def _basic(device: str, token: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{device}:{token}".encode()).decode()}


def test_bundle_download_needs_the_devices_own_credentials(app: Any, db: Any, published: bytes) -> None:
    with db.write() as conn:
        token = auth.issue_device_token(conn, "unit-a")
        other = auth.issue_device_token(conn, "unit-b")
    c = app.test_client()
    url = "/bundles/v0000000001/vectors.npy"
    assert c.get(url).status_code == 401
    assert c.get(url, headers=_basic("unit-a", "x" * 43)).status_code == 401
    assert c.get(url, headers=_basic("unit-a", other)).status_code == 401  # another device's token
    assert c.get(url, headers=_basic("unit-zzz", token)).status_code == 401
    r = c.get(url, headers=_basic("unit-a", token))
    assert r.status_code == 200 and r.data == published
    etag = r.headers["ETag"]
    assert etag == f'"{hashlib.sha256(published).hexdigest()}"'
    r = c.get(url, headers={**_basic("unit-a", token), "Range": "bytes=100-199", "If-Range": etag})
    assert r.status_code == 206 and r.data == published[100:200]
    assert r.headers["Content-Range"] == f"bytes 100-199/{len(published)}"
    assert c.get(url, headers={**_basic("unit-a", token), "If-None-Match": etag}).status_code == 304
    assert c.get("/bundles/../server.sqlite3", headers=_basic("unit-a", token)).status_code == 404
    with db.write() as conn:
        auth.revoke_device(conn, "unit-a")
    assert c.get(url, headers=_basic("unit-a", token)).status_code == 401
    assert c.get(url, headers=_basic("unit-b", other)).status_code == 200


# -- the audit log --------------------------------------------------------------------------------


def _chain(db: Any, n: int = 6) -> None:
    with db.write() as conn:
        for i in range(n):
            audit.append(conn, "ada", "review.confirm", f"r{i}", {"i": i})


def _verify_cli(config: Any) -> Any:
    return CliRunner().invoke(cli, ["--set", f"server.database_url={config.server.database_url}", "audit", "verify"])


@pytest.mark.parametrize(
    "tamper",
    [
        "UPDATE audit_log SET details = '{\"i\":99}' WHERE seq = 3",
        "UPDATE audit_log SET actor = 'mallory' WHERE seq = 2",
        "UPDATE audit_log SET ts = ts + 1 WHERE seq = 4",
        "DELETE FROM audit_log WHERE seq = 3",
        "DELETE FROM audit_log WHERE seq = 6",
        "DELETE FROM audit_log WHERE seq >= 5; UPDATE audit_head SET seq = 4",
        (
            "UPDATE audit_log SET seq = 100 WHERE seq = 2; UPDATE audit_log SET seq = 2 WHERE seq = 3; "
            "UPDATE audit_log SET seq = 3 WHERE seq = 100"
        ),
    ],
)
def test_tampered_audit_log_detected(db: Any, config: Any, tamper: str) -> None:
    _chain(db)
    with db.read() as conn:
        assert audit.verify(conn).ok
    assert _verify_cli(config).exit_code == 0
    with db.write() as conn:
        for stmt in tamper.split(";"):
            conn.exec_driver_sql(stmt)
    with db.read() as conn:
        v = audit.verify(conn)
    assert not v.ok and v.problems
    r = _verify_cli(config)
    assert r.exit_code == 1 and "BROKEN" in r.output


def test_long_subject_verifies_and_an_edit_still_fails(db: Any, config: Any) -> None:
    """What is hashed is what is stored: a subject far longer than the old 256-character column."""
    long_subject = "identity-" + "x" * 990
    with db.write() as conn:
        audit.append(conn, "ada", "identity.wipe", "short", {})
        audit.append(conn, "ada", "identity.wipe", long_subject, {"reason": "test"})
        audit.append(conn, "ada", "identity.wipe", "after", {})
    with db.read() as conn:
        assert audit.verify(conn).ok
        assert [e.subject for e in audit.entries(conn)][1] == long_subject
    r = _verify_cli(config)
    assert r.exit_code == 0 and "ok: 3 entries" in r.output, r.output
    with db.write() as conn:
        conn.execute(text("UPDATE audit_log SET subject = :s WHERE seq = 2"), {"s": long_subject[:-1] + "y"})
    with db.read() as conn:
        v = audit.verify(conn)
    assert not v.ok and any("entry 2" in p and "edited" in p for p in v.problems), v.problems
    r = _verify_cli(config)
    assert r.exit_code == 1 and "BROKEN" in r.output


def test_an_entry_edited_with_its_own_hash_recomputed_breaks_the_link_to_the_next(db: Any) -> None:
    """Recomputing an edited entry's own hash makes it self-consistent: only the next entry's prev_hash
    link (and nothing else) shows the edit."""
    _chain(db, 5)
    with db.write() as conn:
        r = conn.execute(
            text("SELECT seq, ts, actor, action, subject, details, prev_hash FROM audit_log WHERE seq = 3")
        ).one()
        h = audit.entry_hash(r.seq, r.ts, r.actor, r.action, r.subject, '{"i":42}', r.prev_hash)
        conn.execute(text("UPDATE audit_log SET details = :d, hash = :h WHERE seq = 3"), {"d": '{"i":42}', "h": h})
    with db.read() as conn:
        v = audit.verify(conn)
    assert not v.ok
    assert v.problems == [
        "entry 4: does not follow the entry before it (an entry before it was deleted, changed or moved)"
    ]


def test_verify_names_a_missing_anchor_and_stops_after_50_problems(db: Any) -> None:
    _chain(db, 60)
    with db.read() as conn:
        head = audit.entries(conn, limit=1)[0]
        assert audit.verify(conn, expect=(head.seq, head.hash)).ok
        v = audit.verify(conn, expect=(999, head.hash))
    assert not v.ok and v.problems == ["anchor entry 999 is not in the log (deleted)"]
    with db.write() as conn:
        conn.exec_driver_sql("UPDATE audit_log SET details = '{}'")  # every entry edited: 60 problems
    with db.read() as conn:
        v = audit.verify(conn)
    assert len(v.problems) == 51 and v.problems[-1] == "... stopped after too many problems", v.problems[-2:]


@pytest.mark.parametrize(
    "deleted, gap",
    [("seq = 3", "entry 3 missing: the log jumps from 2 to 4 (deleted)"),
     ("seq IN (3, 4)", "entry 3 to 4 missing: the log jumps from 2 to 5 (deleted)")],
)  # fmt: skip
def test_verify_says_which_entries_were_deleted(db: Any, deleted: str, gap: str) -> None:
    _chain(db, 6)
    with db.write() as conn:
        conn.exec_driver_sql(f"DELETE FROM audit_log WHERE {deleted}")
    with db.read() as conn:
        v = audit.verify(conn)
    assert v.problems[0] == gap, v.problems
    assert v.problems[1].startswith("entry ") and "does not follow" in v.problems[1]


def test_verify_reports_a_missing_head_and_a_log_cut_short_of_it(db: Any) -> None:
    _chain(db, 6)
    with db.write() as conn:
        conn.exec_driver_sql("DELETE FROM audit_log WHERE seq >= 5")  # the newest two, head left alone
    with db.read() as conn:
        v = audit.verify(conn)
    assert (v.ok, v.entries, v.head_seq) == (False, 4, 6)
    assert v.problems == [
        "the log ends at entry 4 but the head records entry 6: the newest entries were deleted or the head was altered"
    ]
    with db.write() as conn:
        conn.exec_driver_sql("DELETE FROM audit_head")
    with db.read() as conn:
        v = audit.verify(conn)
    assert (v.head_seq, v.head_hash, v.problems) == (0, audit.GENESIS, ["the audit head row is missing"])


def test_rewritten_history_detected_against_an_anchor(db: Any, config: Any) -> None:
    _chain(db, 4)
    with db.read() as conn:
        anchor = audit.entries(conn, limit=1)[0]
    # someone rewrites entry 2 and recomputes every later hash and the head: the chain alone is consistent
    with db.write() as conn:
        rows = conn.execute(text("SELECT seq, ts, actor, action, subject, details FROM audit_log ORDER BY seq")).all()
        prev = audit.GENESIS
        for r in rows:
            details = '{"i":42}' if r.seq == 2 else r.details
            h = audit.entry_hash(r.seq, r.ts, r.actor, r.action, r.subject, details, prev)
            conn.execute(
                text("UPDATE audit_log SET details=:d, prev_hash=:p, hash=:h WHERE seq=:s"),
                {"d": details, "p": prev, "h": h, "s": r.seq},
            )
            prev = h
        conn.execute(text("UPDATE audit_head SET hash=:h"), {"h": prev})
    with db.read() as conn:
        assert audit.verify(conn).ok
        v = audit.verify(conn, expect=(anchor.seq, anchor.hash))
        assert not v.ok and v.problems == [
            f"entry {anchor.seq}: hash differs from the anchor {anchor.hash[:16]}... (history rewritten)"
        ]
    r = CliRunner().invoke(
        cli,
        [
            "--set",
            f"server.database_url={config.server.database_url}",
            "audit",
            "verify",
            "--expect",
            f"{anchor.seq}:{anchor.hash}",
        ],
    )
    assert r.exit_code == 1


def test_logins_reviews_and_admin_actions_are_audited(app: Any, db: Any, users: Any) -> None:
    b = Browser(app)
    b.login("rita", "wrong password!!")
    b.login("ada")
    b.post("/fleet/devices", {"device_id": "unit-q"})
    b.post("/users", {"username": "newbie", "password": PASSWORD, "roles": "reviewer"})
    with db.read() as conn:
        actions = [e.action for e in audit.entries(conn)]
        assert audit.verify(conn).ok
    for a in ("login.failed", "login.ok", "device.credential", "user.create"):
        assert a in actions


def test_user_admin_cannot_lock_themselves_out(as_admin: Browser, users: Any) -> None:
    r = as_admin.post(f"/users/{users['admin'].id}", {"roles": "reviewer", "active": "on"})
    assert r.status_code == 302 and "error" in r.headers["Location"]
    assert as_admin.get("/users").status_code == 200


def test_disabled_user_is_logged_out(app: Any, db: Any, as_reviewer: Browser, users: Any) -> None:
    with db.write() as conn:
        auth.set_user(conn, users["reviewer"].id, active=False)
    assert as_reviewer.get("/review").status_code == 401
    assert Browser(app).login("rita").status_code == 401


def test_short_passwords_and_unknown_roles_refused(db: Any) -> None:
    with db.write() as conn:
        with pytest.raises(auth.AccountError):
            auth.create_user(conn, "shorty", "short", ["reviewer"])
        with pytest.raises(auth.AccountError):
            auth.create_user(conn, "someone", PASSWORD, ["superuser"])


def test_an_entry_is_hashed_and_stored_as_the_documented_formula_says(db: Any, config: Any) -> None:
    """An outside verifier recomputes hash_n from the stored row alone: SHA-256 of canonical JSON (sorted keys,
    no spaces, UTF-8 as is) of seq, ts to 6 decimals, actor, action, subject, details and hash_{n-1}."""
    too_long = (
        r"^audit actor and action are at most 64 characters \(got {}, {}\): "
        "they are stored and hashed as given, never cut$"
    )
    with db.write() as conn:
        first = audit.append(conn, "ada", "review.confirm", "r-é", {"b": [1, 2], "a": "Zoë"})
        second = audit.append(conn, "a" * 64, "x" * 64)  # 64 characters is the limit, not over it
        with pytest.raises(ValueError, match=too_long.format(65, 6)):
            audit.append(conn, "a" * 65, "logout")
        with pytest.raises(ValueError, match=too_long.format(3, 65)):
            audit.append(conn, "ada", "x" * 65)
    with db.read() as conn:
        rows = conn.execute(text("SELECT * FROM audit_log ORDER BY seq")).all()
        head = conn.execute(text("SELECT seq, hash FROM audit_head")).one()
    assert [r.seq for r in rows] == [1, 2] and (head.seq, head.hash) == (2, second.hash)
    assert rows[0].details == '{"a":"Zoë","b":[1,2]}' and (rows[1].subject, rows[1].details) == ("", "{}")
    prev = "0" * 64
    for r, e in zip(rows, (first, second), strict=True):
        doc = (
            f'{{"action":{json.dumps(r.action)},"actor":{json.dumps(r.actor)},"details":{json.dumps(r.details, ensure_ascii=False)},'
            f'"prev":"{prev}","seq":{r.seq},"subject":{json.dumps(r.subject, ensure_ascii=False)},"ts":"{r.ts:.6f}"}}'
        )
        assert r.prev_hash == prev and r.hash == hashlib.sha256(doc.encode()).hexdigest() == e.hash
        prev = r.hash
    assert (first.seq, first.actor, first.action, first.subject) == (1, "ada", "review.confirm", "r-é")
    assert first.details == {"b": [1, 2], "a": "Zoë"} and first.prev_hash == audit.GENESIS and second.details == {}
    assert second.prev_hash == first.hash and abs(first.ts - rows[0].ts) < 1e-6
    with db.read() as conn:
        assert audit.entries(conn) == [second, first]
        v = audit.verify(conn)
    assert v.as_dict() == {"ok": True, "entries": 2, "head_seq": 2, "head_hash": second.hash, "problems": []}
    r = CliRunner().invoke(
        cli, ["--set", f"server.database_url={config.server.database_url}", "audit", "verify", "--json"]
    )
    assert r.exit_code == 0 and json.loads(r.stdout.splitlines()[-1]) == v.as_dict(), r.output


def test_entries_are_newest_first_with_a_limit_a_cursor_and_an_action_prefix(db: Any) -> None:
    with db.write() as conn:
        for i in range(205):
            audit.append(conn, "ada", "user.create" if i % 2 else "review.confirm", f"s{i}", {"i": i})
        audit.append(conn, "ada", "user.role_request", "last", {})
    with db.write() as conn:  # an entry whose details no longer parse is still shown, cut to 200 characters
        conn.execute(text("UPDATE audit_log SET details = :d WHERE seq = 1"), {"d": "{" + "x" * 300})
    with db.read() as conn:
        newest = audit.entries(conn)
        assert [e.seq for e in newest] == list(range(206, 6, -1))  # 200 by default
        assert [e.seq for e in audit.entries(conn, limit=3, before=100)] == [99, 98, 97]
        assert [e.seq for e in audit.entries(conn, before=3)] == [2, 1]
        users_ = audit.entries(conn, action="user.", limit=1000)
        assert len(users_) == 103 and {e.action for e in users_} == {"user.create", "user.role_request"}
        assert [e.seq for e in audit.entries(conn, action="user.role", limit=5)] == [206]
        oldest = audit.entries(conn, limit=1, before=2)[0]
    assert oldest.details == {"unparsable": "{" + "x" * 199} and oldest.subject == "s0"
    assert (oldest.actor, oldest.action, oldest.prev_hash) == ("ada", "review.confirm", audit.GENESIS)


def test_each_append_is_journalled_with_its_seq_and_hash_as_an_anchor(db: Any, caplog: Any) -> None:
    """The journal line is what `audit verify --expect SEQ:HASH` is later checked against (a subject cut to
    256 characters there; the log itself keeps it whole)."""
    caplog.set_level("INFO", logger="edgeface.server.audit")
    with db.write() as conn:
        e = audit.append(conn, "ada", "identity.wipe", "s" * 300, {"why": "asked"})
    lines = [r for r in caplog.records if r.name == "edgeface.server.audit"]
    assert [r.getMessage() for r in lines] == ["audit.appended"]
    assert lines[0].edgeface_fields == {
        "seq": e.seq,
        "hash": e.hash,
        "action": "identity.wipe",
        "actor": "ada",
        "subject": "s" * 256,
    }


def test_an_entry_records_when_to_the_microsecond(db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as m, db.write() as conn:
        m.setattr(audit.time, "time", lambda: 1_700_000_000.1234567)
        e = audit.append(conn, "ada", "logout")
    with db.read() as conn:
        stored = audit.entries(conn, limit=1)[0]
        assert audit.verify(conn).ok
    assert e.ts == stored.ts == 1_700_000_000.123457


def test_verify_reads_the_chain_in_seq_order_on_postgresql(postgres: str) -> None:  # noqa: F811
    """PostgreSQL returns rows in storage order unless told: an entry rewritten unchanged (a new row version
    at the end of the table) must still be read in its place in the chain."""
    from edgeface.server.db import Database

    db = Database(postgres)
    try:
        db.migrate()
        _chain(db, 5)
        with db.write() as conn:
            conn.exec_driver_sql("UPDATE audit_log SET actor = actor WHERE seq <= 2")
        with db.read() as conn:
            v = audit.verify(conn)
            newest = [e.seq for e in audit.entries(conn)]
        assert (v.ok, v.entries, v.problems) == (True, 5, []) and newest == [5, 4, 3, 2, 1]
    finally:
        db.dispose()


def test_verify_names_the_edited_entry_and_its_action(db: Any) -> None:
    _chain(db, 4)
    with db.write() as conn:
        conn.exec_driver_sql("UPDATE audit_log SET subject = 'r9' WHERE seq = 3")
    with db.read() as conn:
        v = audit.verify(conn)
    assert (v.ok, v.entries, v.head_seq) == (False, 4, 4)
    assert v.problems == ["entry 3 (review.confirm): content does not match its hash (edited)"]
