"""The two-person rule is about people: accounts one administrator made or holds the password of never
count as a second person, and every role added on the web waits for another administrator's approval."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select, text

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
