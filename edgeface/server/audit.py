"""The audit log: append-only and hash-chained.

Entry *n* stores ``hash_n = SHA-256(seq, ts, actor, action, subject, details, hash_{n-1})`` (canonical
JSON), starting from a genesis hash of 64 zeros. Every field is stored exactly as hashed: the subject
whole, however long (the log keeps what happened verbatim, not a cut that no longer verifies); an
actor or action longer than its column is a programming error and refused. The ``audit_head`` row
holds the newest seq and hash; appending locks it (``SELECT ... FOR UPDATE`` on PostgreSQL, the write
lock on SQLite), so entries from several processes form one chain, and every entry is written in the
same transaction as the action it records: no action without its entry, no entry without its action.

:func:`verify` recomputes the chain: an edited entry changes its hash, a deleted one leaves a gap and a
broken link, reordered entries break links, and deleting the newest entries leaves the chain short of
the head. Someone who can write the database can still rewrite the whole chain and the head
consistently; each append is also logged (``audit.appended`` with seq and hash) to the journal, and
``edgeface audit verify --expect SEQ:HASH`` checks the chain against such an anchor kept elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select, update

from ..logs import get_logger
from .tables import audit_head, audit_log

log = get_logger(__name__)

GENESIS = "0" * 64

# What is audited (the action names used across the server).
ACTIONS = (
    "login.ok",
    "login.failed",
    "login.refused",
    "logout",
    "user.create",
    "user.update",
    "user.password",
    "user.role_request",
    "user.role_approve",
    "user.role_refuse",
    "api_token.create",  # a user's own API token (its id, name, roles, expiry; never the token)
    "api_token.revoke",
    "review.confirm",
    "review.reject",
    "review.unknown",
    "results.export",
    "enroll.image",
    "identity.wipe",
    "gallery.publish",
    "device.credential",
    "device.revoke",
    "device.broker_cutoff",  # a revoked unit's broker account disabled (or why not)
    "command.issue",  # a signed command to a unit: numbered and signed (edgeface.server.commands)
    "command.send",  # ... published to the broker, or why not
    "command.applied",  # the unit's reply (actor unit:<id>): done
    "command.refused",  # ... refused, with the unit's reason (unsigned, bad_signature, expired, replay, ...)
    "command.failed",  # ... accepted but failed (a wipe that could not destroy everything)
    "images.view",  # one per page view that showed enrolled images, listing them
    "retention.purge",  # one per purge run: counts, policy, export folder and digests
    "case.close",
    "case.reopen",
)


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(seq: int, ts: float, actor: str, action: str, subject: str, details: str, prev: str) -> str:
    doc = {
        "seq": seq,
        "ts": f"{ts:.6f}",
        "actor": actor,
        "action": action,
        "subject": subject,
        "details": details,
        "prev": prev,
    }
    return hashlib.sha256(canonical(doc).encode()).hexdigest()


@dataclass(frozen=True)
class Entry:
    seq: int
    ts: float
    actor: str
    action: str
    subject: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


def append(
    conn: Connection, actor: str, action: str, subject: str = "", details: Mapping[str, Any] | None = None
) -> Entry:
    """Add an entry inside the caller's write transaction (committed with the action it records)."""
    if len(actor) > 64 or len(action) > 64:
        raise ValueError(
            f"audit actor and action are at most 64 characters (got {len(actor)}, {len(action)}): "
            "they are stored and hashed as given, never cut"
        )
    head = conn.execute(select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1).with_for_update()).one()
    seq, prev = int(head.seq) + 1, str(head.hash)
    ts = round(time.time(), 6)
    text = canonical(dict(details or {}))
    h = entry_hash(seq, ts, actor, action, subject, text, prev)
    conn.execute(
        audit_log.insert().values(
            seq=seq, ts=ts, actor=actor, action=action, subject=subject, details=text, prev_hash=prev, hash=h
        )
    )
    conn.execute(update(audit_head).where(audit_head.c.id == 1).values(seq=seq, hash=h))
    log.info("audit.appended", seq=seq, hash=h, action=action, actor=actor, subject=subject[:256])
    return Entry(seq, ts, actor, action, subject, dict(details or {}), prev, h)


def entries(conn: Connection, *, limit: int = 200, before: int | None = None, action: str | None = None) -> list[Entry]:
    """Newest first (for the web view)."""
    q = select(audit_log).order_by(audit_log.c.seq.desc()).limit(limit)
    if before is not None:
        q = q.where(audit_log.c.seq < before)
    if action:
        q = q.where(audit_log.c.action.like(f"{action}%"))
    return [_entry(r) for r in conn.execute(q)]


def _entry(r: Any) -> Entry:
    try:
        details = json.loads(r.details)
    except ValueError:
        details = {"unparsable": r.details[:200]}
    return Entry(int(r.seq), float(r.ts), r.actor, r.action, r.subject, details, r.prev_hash, r.hash)


@dataclass
class Verification:
    ok: bool
    entries: int
    head_seq: int
    head_hash: str
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
            "problems": self.problems,
        }


def _rows(conn: Connection, chunk: int = 5000) -> Iterator[Any]:
    last = -1
    while True:
        rows = conn.execute(
            select(audit_log).where(audit_log.c.seq > last).order_by(audit_log.c.seq).limit(chunk)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def verify(conn: Connection, *, expect: tuple[int, str] | None = None, max_problems: int = 50) -> Verification:
    """Recompute the whole chain; ``expect`` = (seq, hash) of an anchor recorded outside the database."""
    problems: list[str] = []
    prev, expected_seq, count = GENESIS, 1, 0
    anchor_seen = False
    for r in _rows(conn):
        count += 1
        seq = int(r.seq)
        if seq != expected_seq:
            problems.append(
                f"entry {expected_seq}"
                + (f" to {seq - 1}" if seq - 1 > expected_seq else "")
                + f" missing: the log jumps from {expected_seq - 1} to {seq} (deleted)"
            )
        if r.prev_hash != prev:
            problems.append(
                f"entry {seq}: does not follow the entry before it (an entry before it was deleted, changed or moved)"
            )
        h = entry_hash(seq, float(r.ts), r.actor, r.action, r.subject, r.details, r.prev_hash)
        if h != r.hash:
            problems.append(f"entry {seq} ({r.action}): content does not match its hash (edited)")
        if expect is not None and seq == expect[0]:
            anchor_seen = True
            if r.hash != expect[1]:
                problems.append(f"entry {seq}: hash differs from the anchor {expect[1][:16]}... (history rewritten)")
        prev, expected_seq = r.hash, seq + 1
        if len(problems) >= max_problems:
            problems.append("... stopped after too many problems")
            break
    head = conn.execute(select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)).one_or_none()
    if head is None:
        problems.append("the audit head row is missing")
        head_seq, head_hash = 0, GENESIS
    else:
        head_seq, head_hash = int(head.seq), str(head.hash)
        if len(problems) < max_problems and (head_seq != expected_seq - 1 or head_hash != prev):
            problems.append(
                f"the log ends at entry {expected_seq - 1} but the head records entry {head_seq}: "
                "the newest entries were deleted or the head was altered"
            )
    if expect is not None and not anchor_seen:
        problems.append(f"anchor entry {expect[0]} is not in the log (deleted)")
    return Verification(not problems, count, head_seq, head_hash, problems)
