"""User administration (administrators): create users, ask for roles, approve another administrator's
role requests, remove roles, disable, reset passwords; and every user's own account page (own password).

Added roles wait for a second administrator's approval (:mod:`edgeface.server.people` says why).
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, abort, g, redirect, render_template, request, url_for
from sqlalchemy import select

from . import api_tokens, audit, auth, people
from .access import ROLES, access
from .services import services
from .tables import users

bp = Blueprint("accounts", __name__)


def _back(error: str | None = None, note: str | None = None) -> Any:
    args: dict[str, Any] = {k: v for k, v in (("error", error), ("note", note)) if v}
    return redirect(url_for("accounts.index", **args))


def _waiting(req: people.RoleRequest | None) -> str | None:
    if req is None:
        return None
    return (
        f"{', '.join(sorted(req.roles))} for {req.username} waits for another administrator's approval "
        "(a different person)"
    )


@bp.route("/users")
@access("admin")
def index() -> Any:
    creator = users.alias("creator")
    with services().db.read() as conn:
        rows = conn.execute(
            select(
                users.c.id,
                users.c.username,
                users.c.roles,
                users.c.active,
                users.c.created_at,
                users.c.owner,
                creator.c.username.label("created_by_name"),
            )
            .outerjoin(creator, creator.c.id == users.c.created_by)
            .order_by(users.c.username)
        ).all()
        requests = people.pending(conn)
    return render_template(
        "users.html",
        rows=rows,
        roles=ROLES,
        requests=requests,
        error=request.args.get("error"),
        note=request.args.get("note"),
    )


@bp.route("/users", methods=["POST"])
@access("admin")
def create() -> Any:
    """A new account with no role yet; the roles asked for wait for a second administrator."""
    username = request.form.get("username", "")
    owner = (request.form.get("owner") or "").strip() or username.strip()
    try:
        wanted = auth.parse_roles(request.form.getlist("roles"))
        with services().db.write() as conn:
            u = auth.create_user(
                conn,
                username,
                request.form.get("password", ""),
                [],
                owner=owner,
                created_by=g.user.id,
                allow_no_role=True,
            )
            audit.append(
                conn,
                g.user.username,
                "user.create",
                u.username,
                {"roles": [], "roles_requested": sorted(wanted), "owner": owner, "created_by": g.user.username},
            )
            req = people.request_roles(conn, g.user, u.id, wanted)
    except auth.AccountError as e:
        return _back(error=str(e))
    return _back(note=_waiting(req))


@bp.route("/users/<int:user_id>", methods=["POST"])
@access("admin")
def change(user_id: int) -> Any:
    """Removed roles, the active flag and a new password take effect now; added roles are requested."""
    active = request.form.get("active") == "on"
    password = request.form.get("password") or None
    try:
        asked = auth.parse_roles(request.form.getlist("roles"), allow_empty=True)
        with services().db.write() as conn:
            row = conn.execute(select(users.c.username, users.c.roles).where(users.c.id == user_id)).first()
            if row is None:
                abort(404)
            held = auth.stored_roles(row.roles)
            removed, added = held - asked, asked - held
            if user_id == g.user.id and (not active or "admin" in removed):
                raise auth.AccountError("you cannot remove your own administrator role or disable yourself")
            auth.set_user(
                conn,
                user_id,
                roles=sorted(held - removed) if removed else None,
                active=active,
                password=password,
                password_set_by=None if user_id == g.user.id else g.user.id,
            )
            audit.append(
                conn,
                g.user.username,
                "user.update",
                row.username,
                {
                    "roles": sorted(held - removed),
                    "roles_removed": sorted(removed),
                    "active": active,
                    "password_reset": password is not None,
                },
            )
            req = people.request_roles(conn, g.user, user_id, added) if added else None
    except auth.AccountError as e:
        return _back(error=str(e))
    return _back(note=_waiting(req))


@bp.route("/users/requests/<int:request_id>/approve", methods=["POST"])
@access("admin")
def approve(request_id: int) -> Any:
    return _decide(request_id, True)


@bp.route("/users/requests/<int:request_id>/refuse", methods=["POST"])
@access("admin")
def refuse(request_id: int) -> Any:
    return _decide(request_id, False)


def _decide(request_id: int, approve: bool) -> Any:
    try:
        with services().db.write() as conn:
            req = people.decide_request(conn, g.user, request_id, approve)
    except auth.AccountError as e:
        return _back(error=str(e))
    verb = "granted to" if approve else "refused for"
    return _back(note=f"{', '.join(sorted(req.roles))} {verb} {req.username}")


# -- one's own account -----------------------------------------------------------------------------------


@bp.route("/account")
@access("reviewer", "admin")
def own() -> Any:
    with services().db.read() as conn:
        me = _me(conn)
    return _own_page(me)


def _me(conn: Any) -> Any:
    creator, setter = users.alias("creator"), users.alias("setter")
    return conn.execute(
        select(
            users.c.username,
            users.c.roles,
            users.c.owner,
            creator.c.username.label("created_by_name"),
            setter.c.username.label("password_set_by_name"),
        )
        .outerjoin(creator, creator.c.id == users.c.created_by)
        .outerjoin(setter, setter.c.id == users.c.password_set_by)
        .where(users.c.id == g.user.id)
    ).one()


def _own_page(me: Any, new_token: str | None = None, status: int = 200) -> Any:
    with services().db.read() as conn:
        tokens = api_tokens.list_tokens(conn, g.user.id)
    return (
        render_template(
            "account.html",
            me=me,
            error=request.args.get("error"),
            tokens=tokens,
            new_token=new_token,
            roles=sorted(g.user.roles),
            now=time.time(),
        ),
        status,
    )


@bp.route("/account/tokens", methods=["POST"])
@access("reviewer", "admin")
def own_token() -> Any:
    """A new API token for oneself, shown once on the page that answers (only its hash is kept); audited.
    Roles: the ones ticked (none ticked: all of the account's); expiry: in days, empty for none."""
    days = (request.form.get("expires_days") or "").strip()
    try:
        if days and (not days.isdigit() or len(days) > 5):
            raise auth.AccountError("expiry is a whole number of days, 1 to 3650 (empty: no expiry)")
        with services().db.write() as conn:
            info, secret = api_tokens.create_token(
                conn,
                g.user,
                request.form.get("name", ""),
                request.form.getlist("roles"),
                int(days) * 86400 if days else None,
            )
            audit.append(
                conn,
                g.user.username,
                "api_token.create",
                g.user.username,
                {"token_id": info.id, "name": info.name, "roles": info.roles or "all", "expires_at": info.expires_at},
            )
    except auth.AccountError as e:
        return redirect(url_for("accounts.own", error=str(e)))
    with services().db.read() as conn:
        me = _me(conn)
    return _own_page(me, new_token=secret, status=201)


@bp.route("/account/tokens/<int:token_id>/revoke", methods=["POST"])
@access("reviewer", "admin")
def own_token_revoke(token_id: int) -> Any:
    """Revoke one of one's own API tokens (it stops at once); audited."""
    with services().db.write() as conn:
        info = api_tokens.revoke_token(conn, token_id, g.user.id)
        if info is None:
            abort(404, "you have no such token")
        audit.append(
            conn, g.user.username, "api_token.revoke", g.user.username, {"token_id": token_id, "name": info.name}
        )
    return redirect(url_for("accounts.own"))


@bp.route("/account/password", methods=["POST"])
@access("reviewer", "admin")
def own_password() -> Any:
    """Choose one's own password (then no administrator knows it); logs out every session."""
    new = request.form.get("new_password") or ""
    try:
        with services().db.write() as conn:
            if not auth.check_password(conn, g.user.id, request.form.get("password") or ""):
                raise auth.AccountError("the current password is wrong")
            if new != request.form.get("repeat"):
                raise auth.AccountError("the two new passwords differ")
            auth.set_user(conn, g.user.id, password=new, password_set_by=None)
            audit.append(conn, g.user.username, "user.password", g.user.username, {"own": True})
    except auth.AccountError as e:
        return redirect(url_for("accounts.own", error=str(e)))
    return redirect(url_for("login"))
