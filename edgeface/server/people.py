"""Accounts belong to people: who counts as a second person, and role grants a second administrator approves.

The two-person rule and the approval of role grants are about people, not accounts. Two accounts are
taken for **one person** when

* they share an owner (``users.owner``: the person an account belongs to, e.g. a staff number),
* one created the other on the web (``users.created_by``: the creator chose its password and name), or
* an administrator set the other's password (``users.password_set_by``), or set both their passwords,
  and the account's own user has not chosen a new one since (the administrator still knows it).

Role grants: every role **added** on the web (to a new account, to someone else's, to one's own) is a
pending request until a second administrator approves it, one who is another person than the
requester and than the account (by the relation above). Without that, an administrator could create a
second reviewer account, or grant herself the reviewer role, and confirm twice; and she could approve
her own requests with a second administrator account she made. Removing a role, disabling an account
and resetting a password take effect at once (none of them gives anyone more power). The command line
(``edgeface server add-user``) grants at once: whoever runs it controls the server and its database.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, insert, select, update

from . import audit, auth
from .auth import AccountError, User
from .tables import role_requests, sessions, users


@dataclass(frozen=True)
class Account:
    id: int
    username: str
    owner: str
    created_by: int | None
    password_set_by: int | None


def accounts(conn: Connection, ids: Iterable[int]) -> dict[int, Account]:
    wanted = sorted(set(ids))
    rows = conn.execute(
        select(users.c.id, users.c.username, users.c.owner, users.c.created_by, users.c.password_set_by).where(
            users.c.id.in_(wanted)
        )
    ).all()
    return {int(r.id): Account(int(r.id), r.username, r.owner, r.created_by, r.password_set_by) for r in rows}


def _name(conn: Connection, uid: int) -> str:
    return str(conn.execute(select(users.c.username).where(users.c.id == uid)).scalar() or f"#{uid}")


def same_person(conn: Connection, a: Account, b: Account) -> str | None:
    """Why accounts ``a`` and ``b`` count as one person, or None when nothing ties them together."""
    if a.id == b.id:
        return f"{a.username} is the same account"
    if a.owner.strip().casefold() == b.owner.strip().casefold():
        return f"{a.username} and {b.username} belong to the same person ({a.owner})"
    for x, y in ((a, b), (b, a)):
        if x.created_by == y.id:
            return f"{x.username} was created by {y.username}"
        if x.password_set_by == y.id:
            return f"{x.username}'s password was set by {y.username} and not changed by its user since"
    if a.password_set_by is not None and a.password_set_by == b.password_set_by:
        return (
            f"the passwords of {a.username} and {b.username} were both set by "
            f"{_name(conn, a.password_set_by)} and not changed by their users since"
        )
    return None


def related(conn: Connection, uid: int, others: Iterable[int]) -> str | None:
    """Why account ``uid`` is the same person as one of ``others``, or None."""
    others = list(others)
    found = accounts(conn, [uid, *others])
    me = found.get(uid)
    if me is None:
        return f"account #{uid} does not exist"
    for o in others:
        if o in found:
            why = same_person(conn, me, found[o])
            if why:
                return why
    return None


# -- role requests ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoleRequest:
    id: int
    user_id: int
    username: str
    roles: frozenset[str]
    requested_by: int
    requested_by_name: str
    requested_at: float


def request_roles(conn: Connection, requester: User, user_id: int, roles: Iterable[str]) -> RoleRequest | None:
    """Ask for ``roles`` to be added to account ``user_id`` (audited); None when it holds them already or
    the same request is pending."""
    target = conn.execute(select(users.c.username, users.c.roles).where(users.c.id == user_id)).first()
    if target is None:
        raise AccountError(f"no account #{user_id}")
    wanted = auth.parse_roles(list(roles)) - auth.stored_roles(target.roles)
    if not wanted:
        return None
    text = ",".join(sorted(wanted))
    if conn.execute(
        select(role_requests.c.id).where(
            role_requests.c.user_id == user_id, role_requests.c.roles == text, role_requests.c.state == "pending"
        )
    ).first():
        return None
    now = time.time()
    rid = conn.execute(
        insert(role_requests)
        .values(user_id=user_id, roles=text, requested_by=requester.id, requested_at=now, state="pending")
        .returning(role_requests.c.id)
    ).scalar_one()
    audit.append(
        conn,
        requester.username,
        "user.role_request",
        target.username,
        {"request": int(rid), "roles": sorted(wanted), "self_grant": user_id == requester.id},
    )
    return RoleRequest(int(rid), user_id, target.username, wanted, requester.id, requester.username, now)


def pending(conn: Connection) -> list[RoleRequest]:
    target, by = users.alias("target"), users.alias("by")
    rows = conn.execute(
        select(role_requests, target.c.username.label("username"), by.c.username.label("by_name"))
        .join(target, target.c.id == role_requests.c.user_id)
        .join(by, by.c.id == role_requests.c.requested_by)
        .where(role_requests.c.state == "pending")
        .order_by(role_requests.c.id)
    ).all()
    return [
        RoleRequest(
            int(r.id),
            int(r.user_id),
            r.username,
            auth.stored_roles(r.roles),
            int(r.requested_by),
            r.by_name,
            float(r.requested_at),
        )
        for r in rows
    ]


def decide_request(conn: Connection, approver: User, request_id: int, approve: bool) -> RoleRequest:
    """Approve (grant the roles) or refuse a pending request, as ``approver`` (audited). Approving needs
    another person than the requester and than the account; refusing is open to any administrator."""
    req = next((r for r in pending(conn) if r.id == request_id), None)
    if req is None:
        raise AccountError(f"role request #{request_id} is not pending (already decided, or no such request)")
    if approve:
        for who, what in ((req.requested_by, "asked for it"), (req.user_id, "would receive the role")):
            why = related(conn, approver.id, [who])
            if why:
                raise AccountError(
                    f"you cannot approve this: {why}, and that account {what}. Another "
                    "administrator, a different person, must approve it"
                )
        held = auth.stored_roles(conn.execute(select(users.c.roles).where(users.c.id == req.user_id)).scalar_one())
        conn.execute(update(users).where(users.c.id == req.user_id).values(roles=",".join(sorted(held | req.roles))))
        conn.execute(sessions.delete().where(sessions.c.user_id == req.user_id))  # new roles at the next login
    conn.execute(
        update(role_requests)
        .where(role_requests.c.id == request_id)
        .values(state="approved" if approve else "refused", decided_by=approver.id, decided_at=time.time())
    )
    audit.append(
        conn,
        approver.username,
        "user.role_approve" if approve else "user.role_refuse",
        req.username,
        {"request": req.id, "roles": sorted(req.roles), "requested_by": req.requested_by_name},
    )
    return req
