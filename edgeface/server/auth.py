"""Accounts and credentials: argon2id passwords, server-side sessions, CSRF tokens, login rate limits,
and the devices' bundle-download tokens.

* Passwords: argon2id (argon2-cffi defaults: 64 MiB, 3 passes), rehashed on login when the
  parameters change. Unknown user names cost the same hash, so timing does not reveal accounts.
* Sessions: the cookie holds 32 random bytes; the database holds only their SHA-256, so a copy of the
  database does not log anyone in. Idle and absolute time-outs; a new token at every login.
* CSRF: a random token per session, required (form field ``csrf_token`` or header ``X-CSRF-Token``) on
  every state-changing request; the login form uses a double-submit cookie before a session exists.
* Image views: an enrolled image's URL carries an HMAC under that session's secret (:func:`view_token`),
  so images open only from the (audited) page that showed them, in the same session.
* Login limits: failures are counted per user name and per client address in the database (shared by
  every server process); past the limit, attempts are refused without checking the password.
* Device tokens: 32 random bytes, shown once; stored as SHA-256 (a fast hash is enough for a
  256-bit random secret, and a bundle download may make dozens of requests).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, delete, func, insert, select, update

from ..errors import EdgefaceError
from ..mqtt.topics import check_device_id
from .access import ROLES
from .tables import devices, login_failures, sessions, users

_hasher = PasswordHasher()
_DUMMY = _hasher.hash("edgeface-dummy-password")
MIN_PASSWORD = 12


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class User:
    id: int
    username: str
    roles: frozenset[str]

    def has(self, *roles: str) -> bool:
        return bool(self.roles & set(roles))


class AccountError(EdgefaceError):
    """A user account cannot be created or changed as asked (the message says why)."""


def parse_roles(text: str | list[str] | tuple[str, ...], *, allow_empty: bool = False) -> frozenset[str]:
    items = text.split(",") if isinstance(text, str) else list(text)
    roles = frozenset(r.strip() for r in items if r.strip())
    bad = roles - set(ROLES)
    if (not roles and not allow_empty) or bad:
        raise AccountError(f"roles {sorted(bad) or '(none)'} not valid: give one or more of {', '.join(ROLES)}")
    return roles


def stored_roles(text: str) -> frozenset[str]:
    """The roles an account holds now (none while its first role waits for approval)."""
    return parse_roles(text, allow_empty=True)


def _check_owner(owner: str) -> str:
    owner = owner.strip()
    if not owner or len(owner) > 64 or not owner.isprintable():
        raise AccountError("the person (owner) of an account is 1-64 printable characters, e.g. a staff number")
    return owner


def create_user(
    conn: Connection,
    username: str,
    password: str,
    roles: str | list[str],
    *,
    owner: str | None = None,
    created_by: int | None = None,
    allow_no_role: bool = False,
) -> User:
    """A new account. ``owner`` names the person it belongs to (default: the user name); ``created_by``
    is the administrator creating it on the web (None: the command line), who then also set its password."""
    username = username.strip()
    if not username or len(username) > 64 or not username.isprintable():
        raise AccountError("user names are 1-64 printable characters")
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"passwords need at least {MIN_PASSWORD} characters")
    if conn.execute(select(users.c.id).where(users.c.username == username)).first():
        raise AccountError(f"user {username!r} already exists")
    r = parse_roles(roles, allow_empty=allow_no_role)
    uid = conn.execute(
        insert(users)
        .values(
            username=username,
            password_hash=_hasher.hash(password),
            roles=",".join(sorted(r)),
            active=True,
            created_at=time.time(),
            owner=_check_owner(owner if owner is not None else username),
            created_by=created_by,
            password_set_by=created_by,
        )
        .returning(users.c.id)
    ).scalar_one()
    return User(int(uid), username, r)


def set_user(
    conn: Connection,
    user_id: int,
    *,
    roles: str | list[str] | None = None,
    active: bool | None = None,
    password: str | None = None,
    password_set_by: int | None = None,
) -> None:
    """Change an account. ``password_set_by``: the administrator who set ``password`` for someone else
    (None: the account's own user); until its user sets their own, the two count as one person."""
    values: dict[str, object] = {}
    if roles is not None:
        values["roles"] = ",".join(sorted(parse_roles(roles, allow_empty=True)))
    if active is not None:
        values["active"] = active
    if password is not None:
        if len(password) < MIN_PASSWORD:
            raise AccountError(f"passwords need at least {MIN_PASSWORD} characters")
        values["password_hash"] = _hasher.hash(password)
        values["password_set_by"] = password_set_by
    if values:
        conn.execute(update(users).where(users.c.id == user_id).values(**values))
    if active is False or password is not None or roles is not None:
        conn.execute(delete(sessions).where(sessions.c.user_id == user_id))  # log out everywhere


def check_password(conn: Connection, user_id: int, password: str) -> bool:
    """Whether ``password`` is this account's (for changing one's own password)."""
    stored = conn.execute(select(users.c.password_hash).where(users.c.id == user_id)).scalar()
    try:
        return _hasher.verify(stored or _DUMMY, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class LoginOutcome:
    user: User | None
    refused: bool = False  # rate limited: the password was not checked
    reason: str = ""


def failures(conn: Connection, username: str, ip: str, window_s: float) -> tuple[int, int]:
    since = time.time() - window_s
    by_user = conn.execute(
        select(func.count())
        .select_from(login_failures)
        .where(login_failures.c.username == username, login_failures.c.at >= since)
    ).scalar_one()
    by_ip = conn.execute(
        select(func.count()).select_from(login_failures).where(login_failures.c.ip == ip, login_failures.c.at >= since)
    ).scalar_one()
    return int(by_user), int(by_ip)


def authenticate(
    conn: Connection, username: str, password: str, ip: str, *, max_user: int, max_ip: int, window_s: float
) -> LoginOutcome:
    """Check a login attempt (inside a write transaction: failures are recorded)."""
    username = username.strip()[:64]
    n_user, n_ip = failures(conn, username, ip, window_s)
    if n_user >= max_user or n_ip >= max_ip:
        return LoginOutcome(
            None, True, "too many failed logins" + (" for this user" if n_user >= max_user else " from this address")
        )
    row = conn.execute(select(users).where(users.c.username == username)).first()
    ok = False
    try:
        ok = _hasher.verify(row.password_hash if row is not None else _DUMMY, password)
    except (VerificationError, InvalidHashError):
        ok = False
    if row is None or not ok or not row.active:
        conn.execute(insert(login_failures).values(username=username, ip=ip, at=time.time()))
        conn.execute(delete(login_failures).where(login_failures.c.at < time.time() - 10 * window_s))
        return LoginOutcome(None, False, "wrong user name or password" if row is None or not ok else "account disabled")
    if _hasher.check_needs_rehash(row.password_hash):
        conn.execute(update(users).where(users.c.id == row.id).values(password_hash=_hasher.hash(password)))
    conn.execute(delete(login_failures).where(login_failures.c.username == username))
    return LoginOutcome(User(int(row.id), row.username, stored_roles(row.roles)))


# -- sessions ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    user: User
    csrf_token: str
    token_hash: str
    last_seen: float


def open_session(conn: Connection, user: User, ip: str) -> str:
    """A new session; returns the cookie value (the only place the raw token exists)."""
    token = secrets.token_urlsafe(32)
    now = time.time()
    conn.execute(
        insert(sessions).values(
            token_hash=token_hash(token),
            user_id=user.id,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            last_seen=now,
            ip=ip[:64],
        )
    )
    return token


def find_session(conn: Connection, token: str | None, *, idle_s: float, max_s: float) -> Session | None:
    if not token or len(token) > 200:
        return None
    th = token_hash(token)
    row = conn.execute(
        select(
            sessions.c.token_hash,
            sessions.c.csrf_token,
            sessions.c.created_at,
            sessions.c.last_seen,
            users.c.id,
            users.c.username,
            users.c.roles,
            users.c.active,
        )
        .join(users, users.c.id == sessions.c.user_id)
        .where(sessions.c.token_hash == th)
    ).first()
    now = time.time()
    if row is None or not row.active or now - row.last_seen > idle_s or now - row.created_at > max_s:
        return None
    return Session(User(int(row.id), row.username, stored_roles(row.roles)), row.csrf_token, th, float(row.last_seen))


def touch_session(conn: Connection, th: str) -> None:
    conn.execute(update(sessions).where(sessions.c.token_hash == th).values(last_seen=time.time()))


def close_session(conn: Connection, th: str) -> None:
    conn.execute(delete(sessions).where(sessions.c.token_hash == th))


def expire_sessions(conn: Connection, *, idle_s: float, max_s: float) -> int:
    now = time.time()
    return (
        conn.execute(
            delete(sessions).where((sessions.c.last_seen < now - idle_s) | (sessions.c.created_at < now - max_s))
        ).rowcount
        or 0
    )


def csrf_ok(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))


def view_token(session_secret: str, scope: str, image_id: int) -> str:
    """The token an image URL carries: HMAC of (scope, image id) under the session's own secret, so an
    image opens only in the session whose page showed it (that page view is audited)."""
    msg = f"image-view\0{scope}\0{image_id}".encode()
    return hmac.new(session_secret.encode(), msg, hashlib.sha256).hexdigest()[:32]


def view_token_ok(session_secret: str, scope: str, image_id: int, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(view_token(session_secret, scope, image_id), str(given))


# -- devices ------------------------------------------------------------------------------------------


def issue_device_token(conn: Connection, device_id: str) -> str:
    """A new bundle-download token for ``device_id`` (replacing any earlier one); returns it once."""
    check_device_id(device_id, "device id")
    token = secrets.token_urlsafe(32)
    values = {"token_hash": token_hash(token), "token_created_at": time.time(), "revoked": False}
    if conn.execute(select(devices.c.device_id).where(devices.c.device_id == device_id)).first():
        conn.execute(update(devices).where(devices.c.device_id == device_id).values(**values))
    else:
        conn.execute(insert(devices).values(device_id=device_id, **values))
    return token


def revoke_device(conn: Connection, device_id: str) -> bool:
    return bool(
        conn.execute(
            update(devices).where(devices.c.device_id == device_id).values(revoked=True, token_hash=None)
        ).rowcount
    )


def check_device(conn: Connection, device_id: str, token: str) -> bool:
    row = conn.execute(
        select(devices.c.token_hash, devices.c.revoked).where(devices.c.device_id == device_id[:64])
    ).first()
    want = row.token_hash if row is not None and row.token_hash and not row.revoked else token_hash("x" + token)
    return hmac.compare_digest(want, token_hash(token)) and row is not None and bool(row.token_hash) and not row.revoked
