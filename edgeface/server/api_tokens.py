"""Bearer tokens for the JSON API (``/api/v1``): one user's, scoped by role, revocable, optionally expiring.

* A token is ``efk_`` + 32 random bytes (URL-safe base64), shown once when created; the database keeps
  only its SHA-256 (as sessions and device tokens: a fast hash is enough for a 256-bit random secret),
  so a copy of the database authenticates nobody.
* A token's roles are the user's roles *now*, narrowed by the token's ``roles`` ("" = all of them): a
  role removed from the user is gone from every token at once, and a deactivated user's tokens stop.
* Failed attempts count against the client address in ``login_failures`` (the login's table and limit,
  ``server.login_max_failures_ip``): guessing tokens is rate limited like guessing passwords.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from .auth import AccountError, User, parse_roles, stored_roles, token_hash
from .tables import api_tokens, login_failures, users

PREFIX = "efk_"
FAILURE_NAME = "(api token)"  # the user name failed token attempts are recorded under
MAX_NAME = 100
MAX_LIFETIME_S = 10 * 365 * 86400.0  # a longer-lived token is one nobody remembers to revoke: none at all


@dataclass(frozen=True)
class TokenInfo:
    """A token as its owner or an administrator sees it (never the secret)."""

    id: int
    user_id: int
    username: str
    name: str
    roles: str  # the narrowing as stored ("" = all the user's roles)
    created_at: float
    expires_at: float | None
    last_used_at: float | None
    revoked_at: float | None

    def state(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


def create_token(
    conn: Connection, user: User, name: str, roles: str | list[str] = "", expires_in_s: float | None = None
) -> tuple[TokenInfo, str]:
    """A new token for ``user`` (in the caller's write transaction); returns it with the secret, shown once.
    ``roles`` narrows the user's roles ("" or []: all of them); a role the user lacks is refused."""
    name = name.strip()
    if not name or len(name) > MAX_NAME or not name.isprintable():
        raise AccountError(f"a token's name is 1-{MAX_NAME} printable characters, e.g. 'nightly export'")
    narrowed = parse_roles(roles, allow_empty=True)
    if narrowed - user.roles:
        raise AccountError(
            f"a token can hold only roles its user holds: {user.username} has "
            f"{', '.join(sorted(user.roles)) or 'no role'}, not {', '.join(sorted(narrowed - user.roles))}"
        )
    if not user.roles:
        raise AccountError("an account without a role cannot have API tokens: a role must be approved first")
    if expires_in_s is not None and not 0 < expires_in_s <= MAX_LIFETIME_S:
        raise AccountError("a token's lifetime is 1 day to 10 years (or none, for no expiry)")
    secret = PREFIX + secrets.token_urlsafe(32)
    now = time.time()
    expires = None if expires_in_s is None else now + expires_in_s
    tid = conn.execute(
        insert(api_tokens)
        .values(
            user_id=user.id,
            token_hash=token_hash(secret),
            name=name,
            roles=",".join(sorted(narrowed)),
            created_at=now,
            expires_at=expires,
        )
        .returning(api_tokens.c.id)
    ).scalar_one()
    info = TokenInfo(int(tid), user.id, user.username, name, ",".join(sorted(narrowed)), now, expires, None, None)
    return info, secret


def _info(r: Any) -> TokenInfo:
    return TokenInfo(
        int(r.id),
        int(r.user_id),
        r.username,
        r.name,
        r.roles,
        float(r.created_at),
        r.expires_at,
        r.last_used_at,
        r.revoked_at,
    )


def list_tokens(conn: Connection, user_id: int | None = None) -> list[TokenInfo]:
    """Every token (``user_id``: that user's only), newest first."""
    q = select(api_tokens, users.c.username).join(users, users.c.id == api_tokens.c.user_id)
    if user_id is not None:
        q = q.where(api_tokens.c.user_id == user_id)
    return [_info(r) for r in conn.execute(q.order_by(api_tokens.c.id.desc()))]


def revoke_token(conn: Connection, token_id: int, user_id: int | None = None) -> TokenInfo | None:
    """Revoke one token (``user_id``: only if it is that user's); the token as it was, or None when there is
    no such token (of that user). Revoking twice keeps the first time."""
    q = select(api_tokens, users.c.username).join(users, users.c.id == api_tokens.c.user_id)
    q = q.where(api_tokens.c.id == token_id)
    row = conn.execute(q if user_id is None else q.where(api_tokens.c.user_id == user_id)).first()
    if row is None:
        return None
    if row.revoked_at is None:
        conn.execute(update(api_tokens).where(api_tokens.c.id == token_id).values(revoked_at=time.time()))
    return _info(row)


@dataclass(frozen=True)
class Bearer:
    """Who a valid token speaks for: the user with the token's effective roles."""

    user: User
    token_id: int
    token_name: str
    last_used_at: float | None


def find_bearer(conn: Connection, secret: str | None) -> Bearer | None:
    """The user and roles behind ``secret``, or None for an unknown, revoked or expired token or a
    deactivated user (a read: :func:`touch` records the use)."""
    if not secret or len(secret) > 200:
        return None
    row = conn.execute(
        select(
            api_tokens.c.id,
            api_tokens.c.name,
            api_tokens.c.roles.label("narrow"),
            api_tokens.c.expires_at,
            api_tokens.c.revoked_at,
            api_tokens.c.last_used_at,
            users.c.id.label("uid"),
            users.c.username,
            users.c.roles,
            users.c.active,
        )
        .join(users, users.c.id == api_tokens.c.user_id)
        .where(api_tokens.c.token_hash == token_hash(secret))
    ).first()
    now = time.time()
    if row is None or not row.active or row.revoked_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= now:
        return None
    held = stored_roles(row.roles)
    roles = held & stored_roles(row.narrow) if row.narrow else held
    return Bearer(User(int(row.uid), row.username, roles), int(row.id), row.name, row.last_used_at)


def touch(conn: Connection, token_id: int) -> None:
    """Record a use of the token (the account page shows when each was last used)."""
    conn.execute(update(api_tokens).where(api_tokens.c.id == token_id).values(last_used_at=time.time()))


def too_many_failures(conn: Connection, ip: str, *, max_ip: int, window_s: float) -> bool:
    """Whether this address failed too often lately (logins and tokens together) to be heard now."""
    n = conn.execute(
        select(func.count())
        .select_from(login_failures)
        .where(login_failures.c.ip == ip, login_failures.c.at >= time.time() - window_s)
    ).scalar_one()
    return int(n) >= max_ip


def record_failure(conn: Connection, ip: str, window_s: float) -> None:
    conn.execute(insert(login_failures).values(username=FAILURE_NAME, ip=ip, at=time.time()))
    conn.execute(delete(login_failures).where(login_failures.c.at < time.time() - 10 * window_s))
