"""``edgeface server token ...``: API tokens for automation, made and revoked by whoever runs the server.

Users make their own on the account page; these commands are for setting up a service account's token
from a deployment script, and for revoking any token quickly. Each is audited (actor ``cli``).
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from ..errors import EdgefaceError
from .app import AppContext, emit_json, pass_app, write_secret


@click.group("token")
def token_group() -> None:
    """Bearer tokens for the JSON API (/api/v1): create, list, revoke."""


@token_group.command("create")
@click.argument("username")
@click.option("--name", required=True, help="What the token is for (shown on the user's account page).")
@click.option(
    "--role",
    "roles",
    multiple=True,
    type=click.Choice(["reviewer", "admin"]),
    help="Narrow the token to these of the user's roles (repeatable; default: all the user's roles).",
)
@click.option("--expires-days", type=click.IntRange(min=1), help="Expire after this many days (default: never).")
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the token here (mode 0600) instead of printing it.",
)
@pass_app
def token_create(
    app: AppContext, username: str, name: str, roles: tuple[str, ...], expires_days: int | None, token_file: Path | None
) -> None:
    """Create an API token for USERNAME (shown once; only its hash is stored)."""
    from sqlalchemy import select

    from ..server import api_tokens, audit, auth
    from ..server.tables import users
    from .server import _db

    db = _db(app)
    try:
        with db.write() as conn:
            row = conn.execute(select(users).where(users.c.username == username)).first()
            if row is None or not row.active:
                raise EdgefaceError(f"no active user {username!r}: create it with `edgeface server add-user` first")
            user = auth.User(int(row.id), row.username, auth.stored_roles(row.roles))
            info, secret = api_tokens.create_token(
                conn, user, name, list(roles), None if expires_days is None else expires_days * 86400.0
            )
            audit.append(
                conn,
                "cli",
                "api_token.create",
                user.username,
                {"token_id": info.id, "name": info.name, "roles": info.roles or "all", "expires_at": info.expires_at},
            )
    finally:
        db.dispose()
    if token_file:
        write_secret(token_file, secret)
        click.echo(f"token {info.id} for {username} written to {token_file}")
    else:
        click.echo(secret)


@token_group.command("list")
@click.option("--user", "username", help="Only this user's tokens.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_app
def token_list(app: AppContext, username: str | None, as_json: bool) -> None:
    """Every API token (never the secret): id, user, name, roles, state, expiry, last use."""
    from ..server import api_tokens
    from .server import _db

    db = _db(app)
    try:
        with db.read() as conn:
            found = [t for t in api_tokens.list_tokens(conn) if username is None or t.username == username]
    finally:
        db.dispose()
    now = time.time()
    if as_json:
        emit_json({"tokens": [{**t.__dict__, "state": t.state(now)} for t in found]})
        return
    for t in found:
        last = time.strftime("%Y-%m-%d %H:%M", time.gmtime(t.last_used_at)) if t.last_used_at else "never"
        click.echo(f"{t.id}\t{t.username}\t{t.name}\t{t.roles or 'all'}\t{t.state(now)}\tlast used {last}")


@token_group.command("revoke")
@click.argument("token_id", type=int)
@pass_app
def token_revoke(app: AppContext, token_id: int) -> None:
    """Revoke API token TOKEN_ID (see `token list`): it stops at once."""
    from ..server import api_tokens, audit
    from .server import _db

    db = _db(app)
    try:
        with db.write() as conn:
            info = api_tokens.revoke_token(conn, token_id)
            if info is None:
                raise EdgefaceError(f"no API token {token_id}: see `edgeface server token list`")
            audit.append(conn, "cli", "api_token.revoke", info.username, {"token_id": token_id, "name": info.name})
    finally:
        db.dispose()
    click.echo(f"token {token_id} ({info.name}) of {info.username} revoked")
