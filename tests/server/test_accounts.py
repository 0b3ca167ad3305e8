"""The two-person rule is about people: accounts one administrator made or holds the password of never
count as a second person, and every role added on the web waits for another administrator's approval."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select, text

from edgeface.errors import ConfigError
from edgeface.server import audit, auth
from edgeface.server.app import create_app
from edgeface.server.db import Database
from edgeface.server.tables import results, users

from .conftest import PASSWORD, Browser, add_results, make_user, server_config

OWN = "ada's own new password!"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Two-person rule on; ada (admin and reviewer) and bob (admin) from the command line, rita (reviewer)."""
    cfg = server_config(tmp_path, **{"server.two_person_rule": "true"})
    db = Database(cfg.server.database_url)
    db.migrate()
    app = create_app(cfg, db=db, migrate=False)
    make_user(db, "ada", "admin", "reviewer")
    make_user(db, "bob", "admin")
    make_user(db, "rita", "reviewer")
    yield {"db": db, "app": app}
    db.dispose()


def login(site: dict[str, Any], name: str, password: str = PASSWORD) -> Browser:
    b = Browser(site["app"])
    assert b.login(name, password).status_code == 302, name
    return b


def message(r: Any) -> str:
    """The error or note a redirect back to a page carries."""
    q = parse_qs(urlsplit(r.headers["Location"]).query)
    return (q.get("error") or q.get("note") or [""])[0]


def uid(db: Database, name: str) -> int:
    with db.read() as conn:
        return int(conn.execute(select(users.c.id).where(users.c.username == name)).scalar_one())


def roles(db: Database, name: str) -> str:
    with db.read() as conn:
        return str(conn.execute(select(users.c.roles).where(users.c.username == name)).scalar_one())


def pending_ids(admin: Browser) -> list[int]:
    page = admin.get("/users").get_data(as_text=True)
    return [int(x) for x in re.findall(r'action="/users/requests/(\d+)/approve"', page)]


def status(db: Database, rid: str) -> str:
    with db.read() as conn:
        return str(conn.execute(select(results.c.review_status).where(results.c.id == rid)).scalar_one())


def confirm(b: Browser, rid: str) -> str:
    r = b.post(f"/review/{rid}/decide", {"verdict": "confirm"})
    assert r.status_code == 302
    return parse_qs(urlsplit(r.headers["Location"]).query).get("error", [""])[0]


def own_password(b: Browser, old: str, new: str) -> None:
    r = b.post("/account/password", {"password": old, "new_password": new, "repeat": new})
    assert r.status_code == 302 and r.headers["Location"].startswith("/login"), r.headers["Location"]


def test_second_account_made_by_the_same_admin_cannot_confirm_twice(site: dict[str, Any]) -> None:
    db = site["db"]
    ada, bob = login(site, "ada"), login(site, "bob")
    r = ada.post("/users", {"username": "ada2", "password": PASSWORD, "roles": "reviewer", "owner": "Carol Jones"})
    assert "reviewer for ada2 waits for another administrator's approval" in message(r)
    assert roles(db, "ada2") == ""  # nothing granted yet
    (req,) = pending_ids(bob)
    assert message(bob.post(f"/users/requests/{req}/approve")) == "reviewer granted to ada2"  # bob was fooled
    ada2 = login(site, "ada2")
    own_password(ada2, PASSWORD, "a brand new password")  # not even choosing a new password helps
    ada2 = login(site, "ada2", "a brand new password")
    rid = add_results(db, 1, match_share=1.0)[0]["id"]
    assert confirm(ada, rid) == ""
    assert status(db, rid) == "awaiting_second"
    why = confirm(ada2, rid)
    assert "second confirmation must come from another person, and ada2 was created by ada" in why
    assert status(db, rid) == "awaiting_second"
    assert confirm(login(site, "rita"), rid) == ""  # another person
    assert status(db, rid) == "confirmed"
    with db.read() as conn:  # the audit log shows who created the reviewer
        created = audit.entries(conn, action="user.create")[0]
        assert audit.verify(conn).ok
    assert created.actor == "ada" and created.subject == "ada2"
    assert created.details["created_by"] == "ada" and created.details["owner"] == "Carol Jones"
    assert "<td>ada2</td><td>Carol Jones</td><td>ada</td>" in bob.get("/users").get_data(as_text=True)


def test_self_granted_reviewer_role_waits_for_another_admin(site: dict[str, Any]) -> None:
    db = site["db"]
    bob, ada = login(site, "bob"), login(site, "ada")
    r = bob.post(f"/users/{uid(db, 'bob')}", {"roles": ["admin", "reviewer"], "active": "on"})
    assert "reviewer for bob waits for another administrator's approval" in message(r)
    assert roles(db, "bob") == "admin"
    bob = login(site, "bob")
    assert bob.get("/review").status_code == 403
    (req,) = pending_ids(bob)
    why = message(bob.post(f"/users/requests/{req}/approve"))
    assert why.startswith("you cannot approve this: bob is the same account") and "Another administrator" in why
    assert roles(db, "bob") == "admin"
    assert message(ada.post(f"/users/requests/{req}/approve")) == "reviewer granted to bob"
    assert roles(db, "bob") == "admin,reviewer"
    assert login(site, "bob").get("/review").status_code == 200
    with db.read() as conn:
        acts = [(e.actor, e.action, e.subject) for e in audit.entries(conn) if e.action.startswith("user.role")]
    assert acts == [("ada", "user.role_approve", "bob"), ("bob", "user.role_request", "bob")]


def test_admin_account_an_admin_made_cannot_approve_her_requests(site: dict[str, Any]) -> None:
    db = site["db"]
    ada, bob = login(site, "ada"), login(site, "bob")
    ada.post("/users", {"username": "ada-admin", "password": PASSWORD, "roles": "admin"})
    (req,) = pending_ids(ada)
    bob.post(f"/users/requests/{req}/approve")
    puppet = login(site, "ada-admin")
    r = ada.post("/users", {"username": "ada3", "password": PASSWORD, "roles": "reviewer"})
    (req,) = pending_ids(ada)
    why = message(puppet.post(f"/users/requests/{req}/approve"))
    assert "ada-admin was created by ada, and that account asked for it" in why, why
    assert roles(db, "ada3") == ""
    assert "is not pending" in message(ada.post("/users/requests/999/approve"))
    assert message(ada.post(f"/users/requests/{req}/refuse")) == "reviewer refused for ada3"  # cancelling: anyone
    assert pending_ids(ada) == [] and r.status_code == 302


def test_new_account_has_no_role_until_approved(site: dict[str, Any]) -> None:
    ada, bob = login(site, "ada"), login(site, "bob")
    ada.post("/users", {"username": "newbie", "password": PASSWORD, "roles": "reviewer"})
    newbie = login(site, "newbie")
    r = newbie.get("/review")
    assert r.status_code == 403 and "no role yet" in r.get_data(as_text=True)
    (req,) = pending_ids(bob)
    bob.post(f"/users/requests/{req}/approve")
    assert newbie.get("/review").status_code == 401  # granting logs the account out: new roles at login
    assert login(site, "newbie").get("/review").status_code == 200


def test_same_owner_accounts_are_one_person(site: dict[str, Any]) -> None:
    db = site["db"]
    with db.write() as conn:  # two accounts of one person, made on the command line
        auth.create_user(conn, "rita.smith", PASSWORD, ["reviewer"], owner="staff 4711")
        auth.create_user(conn, "rsmith-night", PASSWORD, ["reviewer"], owner="Staff 4711 ")
    rid = add_results(db, 1, match_share=1.0)[0]["id"]
    assert confirm(login(site, "rita.smith"), rid) == ""
    why = confirm(login(site, "rsmith-night"), rid)
    assert "rsmith-night and rita.smith belong to the same person (Staff 4711)" in why
    assert status(db, rid) == "awaiting_second"


def test_password_set_by_an_admin_ties_the_account_to_her_until_changed(site: dict[str, Any]) -> None:
    db = site["db"]
    ada = login(site, "ada")
    r = ada.post(f"/users/{uid(db, 'rita')}", {"roles": "reviewer", "active": "on", "password": OWN})
    assert r.status_code == 302 and message(r) == ""
    rid = add_results(db, 1, match_share=1.0)[0]["id"]
    assert confirm(ada, rid) == ""
    rita = login(site, "rita", OWN)  # ada knows this password: as good as ada's own account
    assert "rita's password was set by ada and not changed by its user since" in confirm(rita, rid)
    page = rita.get("/account").get_data(as_text=True)
    assert "set by ada: choose your own" in page
    bad = rita.post("/account/password", {"password": "wrong password!!", "new_password": "x" * 12, "repeat": "x" * 12})
    assert message(bad) == "the current password is wrong"
    own_password(rita, OWN, "rita's secret passphrase")
    rita = login(site, "rita", "rita's secret passphrase")
    assert "chosen by you" in rita.get("/account").get_data(as_text=True)
    assert confirm(rita, rid) == ""
    assert status(db, rid) == "confirmed"
    with db.read() as conn:
        assert [e.subject for e in audit.entries(conn, action="user.password")] == ["rita"]


def test_two_different_people_made_on_the_web_can_confirm(site: dict[str, Any]) -> None:
    """The whole legitimate path: ada creates carol, bob approves, carol chooses her password; then rita
    (not related to carol) and carol are two people."""
    db = site["db"]
    ada, bob = login(site, "ada"), login(site, "bob")
    ada.post("/users", {"username": "carol", "password": PASSWORD, "roles": "reviewer"})
    (req,) = pending_ids(bob)
    bob.post(f"/users/requests/{req}/approve")
    own_password(login(site, "carol"), PASSWORD, "carol's own passphrase")
    carol = login(site, "carol", "carol's own passphrase")
    rid = add_results(db, 1, match_share=1.0)[0]["id"]
    assert confirm(login(site, "rita"), rid) == ""
    assert confirm(carol, rid) == ""
    assert status(db, rid) == "confirmed"
    with db.read() as conn:
        last = audit.entries(conn, action="review.confirm")[0]
    assert last.actor == "carol" and last.details["reviewer_created_by"] == "ada"


def test_role_removal_takes_effect_at_once(site: dict[str, Any]) -> None:
    db = site["db"]
    bob = login(site, "bob")
    r = bob.post(f"/users/{uid(db, 'ada')}", {"roles": "admin", "active": "on"})
    assert r.status_code == 302 and message(r) == ""
    assert roles(db, "ada") == "admin" and pending_ids(bob) == []


def test_migration_fills_in_creators_and_password_setters(tmp_path: Path) -> None:
    """Accounts made before revision 0003: owner = user name; creator and password setter from the log."""
    db = Database(f"sqlite:///{tmp_path / 'old.sqlite3'}")
    try:
        db.migrate("0002")
        with db.write() as conn:
            for name in ("ada", "rita", "rob", "cli-made"):
                conn.execute(
                    text(
                        "INSERT INTO users (username, password_hash, roles, active, created_at) "
                        "VALUES (:n, 'x', 'reviewer', 1, 0)"
                    ),
                    {"n": name},
                )
            audit.append(conn, "cli", "user.create", "ada", {"roles": ["admin"]})
            audit.append(conn, "cli", "user.create", "cli-made", {"roles": ["reviewer"]})
            audit.append(conn, "ada", "user.create", "rita", {"roles": ["reviewer"]})
            audit.append(conn, "ada", "user.update", "rob", {"roles": ["reviewer"], "password_reset": True})
            audit.append(conn, "ada", "user.update", "cli-made", {"roles": ["reviewer"], "password_reset": False})
        db.migrate()
        with db.read() as conn:
            rows = {r.username: (r.owner, r.created_by, r.password_set_by) for r in conn.execute(select(users))}
            assert audit.verify(conn).ok
        ada = next(i for i, name in enumerate(("ada", "rita", "rob", "cli-made"), 1) if name == "ada")
        assert rows == {
            "ada": ("ada", None, None),
            "rita": ("rita", ada, ada),
            "rob": ("rob", None, ada),
            "cli-made": ("cli-made", None, None),
        }
    finally:
        db.dispose()


# -- the account functions themselves (what the pages and the command line rely on) ---------------------


def _user_row(db: Any, uid: int) -> Any:
    with db.read() as conn:
        return conn.execute(select(users).where(users.c.id == uid)).one()


def test_accounts_are_created_and_changed_only_as_the_rules_allow(db: Any) -> None:
    with db.write() as conn:
        for name, pw, roles, why in [
            ("  ", PASSWORD, "reviewer", "user names are 1-64 printable characters"),
            ("x" * 65, PASSWORD, "reviewer", "user names are 1-64 printable characters"),
            ("tab\tname", PASSWORD, "reviewer", "user names are 1-64 printable characters"),
            ("shorty", "x" * 11, "reviewer", "passwords need at least 12 characters"),
            ("nobody", PASSWORD, " , ", r"roles \(none\) not valid: give one or more of reviewer, admin"),
            ("boss", PASSWORD, "admin,root", r"roles \['root'\] not valid: give one or more of reviewer, admin"),
        ]:
            with pytest.raises(auth.AccountError, match=f"^{why}"):
                auth.create_user(conn, name, pw, roles)
        for owner in ("", " " * 3, "o" * 65, "new\nline"):
            with pytest.raises(auth.AccountError, match=r"^the person \(owner\) of an account is 1-64 printable"):
                auth.create_user(conn, "owned", PASSWORD, "reviewer", owner=owner)
        longest = auth.create_user(conn, " " + "x" * 64 + " ", "y" * 12, " admin , reviewer,", owner="o" * 64)
        pending = auth.create_user(conn, "pending", PASSWORD, [], allow_no_role=True, created_by=longest.id)
        with pytest.raises(auth.AccountError, match="^user 'pending' already exists"):
            auth.create_user(conn, " pending ", PASSWORD, "reviewer")
    assert longest.username == "x" * 64 and longest.roles == frozenset({"admin", "reviewer"})
    for nothing in ("", [], ("  ",)):  # a new account on the web, a role request: at least one role
        with pytest.raises(auth.AccountError, match=r"^roles \(none\) not valid"):
            auth.parse_roles(nothing)
    assert auth.parse_roles(("admin",)) == frozenset({"admin"}) and auth.stored_roles("") == frozenset()
    assert longest.has("admin") and longest.has("nobody", "reviewer") and not pending.has("admin", "reviewer")
    row = _user_row(db, longest.id)
    assert (row.roles, row.owner, row.active, row.created_by, row.password_set_by) == (
        "admin,reviewer", "o" * 64, True, None, None
    )  # fmt: skip
    row = _user_row(db, pending.id)
    assert (row.roles, row.owner, row.created_by, row.password_set_by) == ("", "pending", longest.id, longest.id)
    assert pending.roles == frozenset() == auth.stored_roles(row.roles)
    with db.read() as conn:
        assert auth.check_password(conn, longest.id, "y" * 12) is True
        assert auth.check_password(conn, longest.id, "y" * 13) is False
        assert auth.check_password(conn, 9999, "y" * 12) is False  # no such account: never a match


def test_changing_an_account_logs_it_out_everywhere_and_records_who_set_the_password(db: Any) -> None:
    with db.write() as conn:
        rita = auth.create_user(conn, "rita", PASSWORD, "reviewer")
        ada = auth.create_user(conn, "ada", PASSWORD, "admin")

    def sessions_of_rita() -> int:
        with db.write() as conn:
            return int(conn.execute(text(f"SELECT count(*) FROM sessions WHERE user_id = {rita.id}")).scalar_one())

    def fresh_session() -> None:
        with db.write() as conn:
            auth.open_session(conn, rita, "10.0.0.1")
            auth.open_session(conn, ada, "10.0.0.2")

    fresh_session()
    with db.write() as conn:
        auth.set_user(conn, rita.id)  # nothing asked, nothing changed: still logged in
    assert sessions_of_rita() == 1
    with db.write() as conn:
        auth.set_user(conn, rita.id, roles="admin , reviewer")
    assert _user_row(db, rita.id).roles == "admin,reviewer" and sessions_of_rita() == 0
    fresh_session()
    with db.write() as conn:
        auth.set_user(conn, rita.id, roles=[], active=True)  # an empty role list is allowed here
    assert (_user_row(db, rita.id).roles, _user_row(db, rita.id).active, sessions_of_rita()) == ("", True, 0)
    fresh_session()
    with db.write() as conn:
        auth.set_user(conn, rita.id, active=False)
    assert _user_row(db, rita.id).active is False and sessions_of_rita() == 0
    with db.write() as conn:
        with pytest.raises(auth.AccountError, match="^passwords need at least 12 characters"):
            auth.set_user(conn, rita.id, password="x" * 11)
        auth.set_user(conn, rita.id, active=True, roles="reviewer")
    fresh_session()
    with db.write() as conn:
        auth.set_user(conn, rita.id, password="set by ada 123", password_set_by=ada.id)
        assert auth.check_password(conn, rita.id, "set by ada 123") and not auth.check_password(conn, rita.id, PASSWORD)
    assert _user_row(db, rita.id).password_set_by == ada.id and sessions_of_rita() == 0
    with db.write() as conn:
        auth.set_user(conn, rita.id, password="twelve chars")  # 12 characters is enough
    assert _user_row(db, rita.id).password_set_by is None
    with db.read() as conn:  # ada's own session was never touched
        assert conn.execute(text(f"SELECT count(*) FROM sessions WHERE user_id = {ada.id}")).scalar_one() == 4


def _login(db: Any, name: str, pw: str, ip: str = "10.0.0.9", **limits: Any) -> auth.LoginOutcome:
    kw = {"max_user": 3, "max_ip": 5, "window_s": 600.0, **limits}
    with db.write() as conn:
        return auth.authenticate(conn, name, pw, ip, **kw)


def test_logins_count_failures_per_user_and_address_within_the_window(db: Any) -> None:
    from argon2 import PasswordHasher

    from edgeface.server.tables import login_failures

    with db.write() as conn:
        rita = auth.create_user(conn, "rita", PASSWORD, "reviewer")
        gone = auth.create_user(conn, "gone", PASSWORD, "reviewer")
        auth.set_user(conn, gone.id, active=False)
        weak = PasswordHasher(time_cost=1, memory_cost=8192).hash(PASSWORD)  # older parameters: rehashed
        conn.execute(users.update().where(users.c.id == rita.id).values(password_hash=weak))
        conn.execute(login_failures.insert().values(username="rita", ip="10.0.0.9", at=time.time() - 6001))
        conn.execute(login_failures.insert().values(username="rita", ip="10.0.0.9", at=time.time() - 700))
    ok = _login(db, " rita ", PASSWORD)
    assert ok == auth.LoginOutcome(auth.User(rita.id, "rita", frozenset({"reviewer"})))
    assert _user_row(db, rita.id).password_hash != weak and "m=65536" in _user_row(db, rita.id).password_hash
    with db.read() as conn:  # a success clears that user's failures
        assert conn.execute(text("SELECT count(*) FROM login_failures")).scalar_one() == 0
    assert _login(db, "rita", "wrong password!") == auth.LoginOutcome(None, False, "wrong user name or password")
    assert _login(db, "nobody", PASSWORD) == auth.LoginOutcome(None, False, "wrong user name or password")
    assert _login(db, "gone", PASSWORD) == auth.LoginOutcome(None, False, "account disabled")
    with db.read() as conn:
        assert auth.failures(conn, "rita", "10.0.0.9", 600) == (1, 3)
        assert auth.failures(conn, "gone", "10.0.0.8", 600) == (1, 0)
    assert _login(db, "rita", "wrong again!!", ip="10.0.0.7").refused is False
    assert _login(db, "rita", PASSWORD, ip="10.0.0.6", max_user=2) == auth.LoginOutcome(
        None, True, "too many failed logins for this user"
    )
    assert _login(db, "gone", PASSWORD, max_ip=3) == auth.LoginOutcome(
        None, True, "too many failed logins from this address"
    )
    assert _login(db, "rita", PASSWORD, max_user=3).user is not None  # 2 failures < 3: checked, and right
    with db.write() as conn:  # failures older than ten windows are purged at the next failure
        conn.execute(login_failures.insert().values(username="old", ip="10.0.0.1", at=time.time() - 6100))
        conn.execute(login_failures.insert().values(username="recent", ip="10.0.0.1", at=time.time() - 5900))
    _login(db, "x" * 70, "wrong password!")
    with db.read() as conn:
        names = set(conn.execute(text("SELECT username FROM login_failures")).scalars())
        assert "old" not in names and {"recent", "x" * 64} <= names
        assert auth.failures(conn, "recent", "10.0.0.1", 6000) == (1, 1)
        assert auth.failures(conn, "recent", "10.0.0.1", 5000) == (0, 0)


def test_sessions_are_found_by_their_token_until_idle_or_too_old(db: Any) -> None:
    with db.write() as conn:
        rita = auth.create_user(conn, "rita", PASSWORD, "reviewer,admin")
        token = auth.open_session(conn, rita, "2001:db8::" + "f" * 80)
        other = auth.open_session(conn, rita, "10.0.0.1")
    assert len(token) >= 43 and token != other
    with db.read() as conn:
        row = conn.execute(text("SELECT * FROM sessions WHERE token_hash = :h"), {"h": auth.token_hash(token)}).one()
        s = auth.find_session(conn, token, idle_s=60, max_s=3600)
        assert auth.find_session(conn, "", idle_s=60, max_s=3600) is None
        assert auth.find_session(conn, None, idle_s=60, max_s=3600) is None
        assert auth.find_session(conn, token + "x", idle_s=60, max_s=3600) is None
        assert auth.find_session(conn, "a" * 201, idle_s=60, max_s=3600) is None
    assert auth.token_hash(token) == hashlib.sha256(token.encode()).hexdigest() == row.token_hash
    assert row.ip == ("2001:db8::" + "f" * 80)[:64] and len(row.csrf_token) >= 43
    assert s == auth.Session(rita, row.csrf_token, row.token_hash, row.last_seen)
    assert s.user.roles == frozenset({"admin", "reviewer"})
    with db.write() as conn:
        conn.execute(text("UPDATE sessions SET last_seen = last_seen - 100, created_at = created_at - 1000"))
        assert auth.find_session(conn, token, idle_s=50, max_s=3600) is None  # idle too long
        assert auth.find_session(conn, token, idle_s=150, max_s=500) is None  # opened too long ago
        assert auth.find_session(conn, token, idle_s=150, max_s=1500) is not None
        auth.touch_session(conn, auth.token_hash(token))
        assert auth.find_session(conn, token, idle_s=50, max_s=1500) is not None  # seen again just now
        assert auth.find_session(conn, other, idle_s=50, max_s=1500) is None  # the other one was not touched
        assert auth.expire_sessions(conn, idle_s=50, max_s=1500) == 1  # the idle one
        assert auth.expire_sessions(conn, idle_s=50, max_s=500) == 1  # the old one
        assert auth.expire_sessions(conn, idle_s=50, max_s=500) == 0
        token = auth.open_session(conn, rita, "10.0.0.1")
        auth.set_user(conn, rita.id)
        assert auth.find_session(conn, token, idle_s=50, max_s=500) is not None
        conn.execute(users.update().where(users.c.id == rita.id).values(active=False))  # disabled behind its back
        assert auth.find_session(conn, token, idle_s=50, max_s=500) is None
        conn.execute(users.update().where(users.c.id == rita.id).values(active=True))
        auth.close_session(conn, auth.token_hash(token))
        assert auth.find_session(conn, token, idle_s=50, max_s=500) is None


def test_csrf_and_image_view_tokens_match_only_their_own_secret_scope_and_image() -> None:
    assert auth.csrf_ok("abc", "abc") is True
    assert not auth.csrf_ok("abc", "abd") and not auth.csrf_ok("abc", "") and not auth.csrf_ok("abc", None)
    assert not auth.csrf_ok("", "") and not auth.csrf_ok(None, None) and not auth.csrf_ok(None, "abc")
    t = auth.view_token("secret", "review/r1", 7)
    msg = b"image-view\0review/r1\x007"
    assert t == hmac.new(b"secret", msg, hashlib.sha256).hexdigest()[:32]
    assert auth.view_token_ok("secret", "review/r1", 7, t) is True
    for args in [("secret2", "review/r1", 7), ("secret", "review/r2", 7), ("secret", "review/r1", 8)]:
        assert auth.view_token(*args) != t and not auth.view_token_ok(*args, t)
    assert not auth.view_token_ok("secret", "review/r1", 7, None) and not auth.view_token_ok(
        "secret", "review/r1", 7, ""
    )


def test_device_tokens_open_only_their_own_unit_until_replaced_or_revoked(db: Any) -> None:
    with db.write() as conn:
        with pytest.raises(ConfigError, match="^device id = 'bad/unit' is not a valid device id"):
            auth.issue_device_token(conn, "bad/unit")
        first = auth.issue_device_token(conn, "unit-a")
        other = auth.issue_device_token(conn, "unit-b")
        assert auth.check_device(conn, "unit-a", first) and auth.check_device(conn, "unit-b", other)
        assert not auth.check_device(conn, "unit-a", other) and not auth.check_device(conn, "unit-c", first)
        assert not auth.check_device(conn, "unit-a" + "x" * 70, first)
        row = conn.execute(text("SELECT * FROM devices WHERE device_id = 'unit-a'")).one()
        assert row.token_hash == auth.token_hash(first) and not row.revoked and row.token_created_at > 0
        assert auth.revoke_device(conn, "unit-a") is True and auth.revoke_device(conn, "unit-z") is False
        row = conn.execute(text("SELECT * FROM devices WHERE device_id = 'unit-a'")).one()
        assert row.revoked and row.token_hash is None  # the credential itself is gone, not only flagged
        assert not auth.check_device(conn, "unit-a", first) and auth.check_device(conn, "unit-b", other)
        again = auth.issue_device_token(conn, "unit-a")  # a new credential after a revocation opens again
        assert (
            again != first and auth.check_device(conn, "unit-a", again) and not auth.check_device(conn, "unit-a", first)
        )
        row = conn.execute(text("SELECT * FROM devices WHERE device_id = 'unit-a'")).one()
        assert row.token_hash == auth.token_hash(again) and not row.revoked
        conn.execute(text("UPDATE devices SET revoked = true WHERE device_id = 'unit-b'"))  # revoked, hash kept
        assert not auth.check_device(conn, "unit-b", other)
