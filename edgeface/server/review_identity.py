"""Whom a confirmation names: one of the result's candidates, any other identity on this server (found by
name or id), or a new person the reviewer names (an identity 'pending' enrollment until an image of it is
enrolled, see gallery_admin.enroll_stored and learning.py).

A reviewer who recognises someone the unit did not offer must be able to say so; the audit entry of the
decision says which of the three it was (``match``: candidate, non_candidate, new_person), since a
non-candidate confirmation rests on the reviewer's eye alone, not on a score.
"""

from __future__ import annotations

import re
import secrets
import time
import unicodedata
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection, and_, func, insert, or_, select

from ..errors import EdgefaceError
from . import audit
from .tables import identities, images, reviews

NEW_PERSON = "+new"  # the review form's identity value for "a new person" (never a valid identity id)
SHOWN_STATUSES = ("enrolled", "unchanged")  # an image that counts as enrolled


class ReviewError(EdgefaceError):
    """A decision cannot be recorded as asked (the message says why)."""


@dataclass(frozen=True)
class IdentityHit:
    """An identity a reviewer can confirm as: ``status`` enrolled or pending, ``images`` its enrolled images."""

    id: str
    name: str
    status: str
    images: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _like(text: str) -> str:
    return "%" + re.sub(r"([\\%_])", r"\\\1", text.lower()) + "%"


def search_identities(conn: Connection, query: str, *, limit: int = 20) -> list[IdentityHit]:
    """Identities whose id or name contains ``query`` (any case), by name; an empty query lists the first
    ``limit``. Pending new persons are included, so a second reviewer can agree with the first."""
    n_images = func.count(images.c.id)
    stmt = (
        select(identities.c.id, identities.c.name, identities.c.status, n_images.label("n"))
        .outerjoin(images, and_(images.c.identity_id == identities.c.id, images.c.status.in_(SHOWN_STATUSES)))
        .group_by(identities.c.id, identities.c.name, identities.c.status)
        .order_by(identities.c.name, identities.c.id)
        .limit(max(1, min(limit, 100)))
    )
    q = " ".join(query.split())[:200]
    if q:
        like = _like(q)
        stmt = stmt.where(
            or_(
                func.lower(identities.c.id).like(like, escape="\\"),
                func.lower(identities.c.name).like(like, escape="\\"),
            )
        )
    return [IdentityHit(r.id, r.name, r.status, int(r.n)) for r in conn.execute(stmt)]


def _new_id(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name).strip("-")[:48].strip("-") or "person"
    return f"{slug}-{secrets.token_hex(3)}"


def create_pending_identity(conn: Connection, name: str, actor: str, *, result_id: str | None = None) -> str:
    """A new identity named ``name``, status 'pending' (nothing enrolled, so no unit matches it yet);
    returns its id, made from the name plus a random suffix (two people may share a name). Audited."""
    name = " ".join((name or "").split())[:200]
    if not name:
        raise ReviewError("type the new person's name (or choose an identity)")
    ident = _new_id(name)
    conn.execute(
        insert(identities).values(id=ident, name=name, created_at=time.time(), created_by=actor, status="pending")
    )
    audit.append(conn, actor, "identity.pending", ident, {"name": name, "result_id": result_id})
    return ident


def confirmed_identity(
    conn: Connection,
    result_id: str,
    candidates: list[str],
    identity_id: str | None,
    new_person: str | None,
    actor: str,
) -> tuple[str, str]:
    """The identity a confirmation names and how it was chosen: ``candidate``, ``non_candidate`` (any
    identity on this server, enrolled or pending) or ``new_person`` (created here, pending)."""
    if new_person is not None:
        if identity_id:
            raise ReviewError("name either an identity or a new person, not both")
        return create_pending_identity(conn, new_person, actor, result_id=result_id), "new_person"
    if identity_id is None:
        if not candidates:
            raise ReviewError(
                "this result has no candidates: search for the identity to confirm, or confirm as a new person"
            )
        identity_id = candidates[0]
    if identity_id in candidates:
        return identity_id, "candidate"
    if conn.execute(select(identities.c.id).where(identities.c.id == identity_id)).first() is None:
        raise ReviewError(
            f"no identity {identity_id!r} on this server: confirm one of the result's candidates, an identity "
            "the search finds, or a new person"
        )
    return identity_id, "non_candidate"


@dataclass(frozen=True)
class OtherChoices:
    """The review form's identities beyond the candidates: those earlier reviewers of this result confirmed
    (so a second reviewer can agree with a non-candidate or a new person) and those the search found."""

    proposed: list[IdentityHit]
    found: list[IdentityHit]
    query: str


def other_choices(conn: Connection, result_id: str, candidates: list[str], query: str) -> OtherChoices:
    """See :class:`OtherChoices`; an empty ``query`` searches nothing."""
    earlier = list(
        dict.fromkeys(
            conn.execute(
                select(reviews.c.identity_id)
                .where(reviews.c.result_id == result_id, reviews.c.verdict == "confirm")
                .order_by(reviews.c.id)
            ).scalars()
        )
    )
    seen = set(candidates)
    proposed = []
    for ident in earlier:
        if ident and ident not in seen:
            seen.add(ident)
            proposed += [h for h in search_identities(conn, ident, limit=100) if h.id == ident]
    query = " ".join(query.split())[:200]
    found = [h for h in search_identities(conn, query) if h.id not in seen] if query else []
    return OtherChoices(proposed, found, query)
