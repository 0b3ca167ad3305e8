"""User administration (administrators only): create users, change roles, disable, reset passwords."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, g, redirect, render_template, request, url_for
from sqlalchemy import select

from . import audit, auth
from .access import ROLES, access
from .tables import users

bp = Blueprint("accounts", __name__)


def _svc() -> Any:
    from .app import services

    return services()


@bp.route("/users")
@access("admin")
def index() -> Any:
    with _svc().db.read() as conn:
        rows = conn.execute(select(users.c.id, users.c.username, users.c.roles, users.c.active, users.c.created_at)
                            .order_by(users.c.username)).all()
    return render_template("users.html", rows=rows, roles=ROLES, error=request.args.get("error"))


@bp.route("/users", methods=["POST"])
@access("admin")
def create() -> Any:
    try:
        with _svc().db.write() as conn:
            u = auth.create_user(conn, request.form.get("username", ""), request.form.get("password", ""),
                                 request.form.getlist("roles"))
            audit.append(conn, g.user.username, "user.create", u.username, {"roles": sorted(u.roles)})
    except auth.AccountError as e:
        return redirect(url_for("accounts.index", error=str(e)))
    return redirect(url_for("accounts.index"))


@bp.route("/users/<int:user_id>", methods=["POST"])
@access("admin")
def change(user_id: int) -> Any:
    roles = request.form.getlist("roles")
    active = request.form.get("active") == "on"
    password = request.form.get("password") or None
    try:
        with _svc().db.write() as conn:
            name = conn.execute(select(users.c.username).where(users.c.id == user_id)).scalar()
            if name is None:
                abort(404)
            if user_id == g.user.id and (not active or "admin" not in roles):
                raise auth.AccountError("you cannot remove your own administrator role or disable yourself")
            auth.set_user(conn, user_id, roles=roles, active=active, password=password)
            audit.append(conn, g.user.username, "user.update", name,
                         {"roles": sorted(roles), "active": active, "password_reset": password is not None})
    except auth.AccountError as e:
        return redirect(url_for("accounts.index", error=str(e)))
    return redirect(url_for("accounts.index"))
