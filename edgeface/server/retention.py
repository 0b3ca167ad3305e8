"""Retention at the centre: which results, face crops and review records are past the policy; their export,
then their deletion, audited.

The policy (``[server.retention]``, all days, 0 = kept):

- an undecided result (``pending``, ``awaiting_second``) goes ``results_days`` after it was received;
- a rejected or "unknown" one goes, with its review records, ``reviewed_days`` after the last decision;
- a confirmed identification stays (``confirmed_days`` 0, the default) or goes that long after confirmation;
- the face crop of an unconfirmed result goes ``crops_days`` after receipt; the record stays for its own days;
- with ``keep_open_cases`` a result tagged with a case nobody closed is kept whole, and a closed case's
  results count their days from the closure at the earliest (a case closed today keeps its results for
  their full period).

A purge batch (:func:`purge`) is one write transaction: find what is due, at most ``limit`` results and
``limit`` crops, oldest first (PostgreSQL: those rows locked, so a decision made meanwhile comes first or
waits; SQLite: the write lock is held throughout), export it (:mod:`.retention_export`, durable before
anything is deleted), delete, and append one ``retention.purge`` audit entry naming the export, its
SHA-256 and the SHA-256 of the purged ids. :func:`purge_all` runs batches until nothing is due (what
``edgeface server purge`` does); :func:`plan` alone is the dry run: it reads and deletes nothing. The audit log itself is never purged (it is the append-only record,
and verifies after a purge as before): its review entries keep the identity and comment of a decision.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, and_, delete, func, or_, select, update

from ..logs import get_logger
from . import audit
from .case_state import CASE_PAYLOAD, case_tag_of, closed_cases, payload_value, stream_rows
from .db import Database
from .retention_export import line, write_export
from .settings import ServerRetentionConfig
from .tables import results, reviews, users

log = get_logger(__name__)

DAY = 86400.0
UNDECIDED = ("pending", "awaiting_second")
REVIEWED = ("rejected", "unknown")
CONFIRMED = "confirmed"
_CHUNK = 500


@dataclass(frozen=True)
class Policy:
    """How long each kind of record is kept, in days (0: kept); see the module docstring."""

    results_days: int = 0
    reviewed_days: int = 0
    confirmed_days: int = 0
    crops_days: int = 0
    keep_open_cases: bool = True

    @classmethod
    def of(cls, cfg: ServerRetentionConfig) -> Policy:
        return cls(cfg.results_days, cfg.reviewed_days, cfg.confirmed_days, cfg.crops_days, cfg.keep_open_cases)

    def days_for(self, status: str) -> int:
        if status == CONFIRMED:
            return self.confirmed_days
        return self.reviewed_days if status in REVIEWED else self.results_days

    def cutoff(self, days: int, now: float) -> float | None:
        """Records older than this (UNIX time) are due; None: kept."""
        return now - days * DAY if days > 0 else None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Due:
    """A result past its retention."""

    id: str
    device_id: str
    review_status: str
    received_at: float
    case: str | None


@dataclass
class Plan:
    """What a purge at ``at`` deletes (``results``) and strips of its crop (``crops``), and what the policy
    keeps that would otherwise be due. ``more``: further records are due beyond the run's limit."""

    at: float
    policy: Policy
    results: list[Due] = field(default_factory=list)
    crops: list[Due] = field(default_factory=list)
    reviews: int = 0
    kept_case: int = 0  # results past their days kept for their case (open, or closed within the period)
    kept_case_crops: int = 0  # crops likewise
    kept_confirmed: int = 0  # confirmed results older than results_days (kept as confirmed_days says)
    more: bool = False

    @classmethod
    def combined(cls, plans: Sequence[Plan]) -> Plan:
        """Several batches' plans as one (what a whole ``edgeface server purge`` did); kept counts are the
        last batch's, the one that scanned everything (an earlier batch stops at its limit)."""
        last = plans[-1]
        out = cls(plans[0].at, last.policy, kept_case=last.kept_case, kept_case_crops=last.kept_case_crops)
        out.kept_confirmed = last.kept_confirmed
        for p in plans:
            out.results += p.results
            out.crops += p.crops
            out.reviews += p.reviews
        out.more = last.more
        return out

    def by_status(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for d in self.results:
            out[d.review_status] = out.get(d.review_status, 0) + 1
        return out

    def cutoffs(self) -> dict[str, float | None]:
        p = self.policy
        return {
            "results": p.cutoff(p.results_days, self.at),
            "reviewed": p.cutoff(p.reviewed_days, self.at),
            "confirmed": p.cutoff(p.confirmed_days, self.at),
            "crops": p.cutoff(p.crops_days, self.at),
        }

    def summary(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "policy": self.policy.as_dict(),
            "cutoffs": self.cutoffs(),
            "results": len(self.results),
            "by_status": self.by_status(),
            "reviews": self.reviews,
            "crops": len(self.crops),
            "kept_case": self.kept_case,
            "kept_case_crops": self.kept_case_crops,
            "kept_confirmed": self.kept_confirmed,
            "more_due": self.more,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "result_ids": [d.id for d in self.results],
            "crop_ids": [d.id for d in self.crops],
        }


def _chunks(ids: Sequence[str]) -> Iterator[Sequence[str]]:
    for i in range(0, len(ids), _CHUNK):
        yield ids[i : i + _CHUNK]


def _age_from(policy: Policy, own: float, tag: str | None, closed: Mapping[str, float]) -> float | None:
    """When a record's days start counting: its own time, or a closed case's closure if later; None while
    its case is open (kept)."""
    if tag is None or not policy.keep_open_cases:
        return own
    if tag not in closed:
        return None
    return max(own, closed[tag])


def plan(conn: Connection, policy: Policy, *, now: float | None = None, limit: int = 5000, lock: bool = False) -> Plan:
    """What is due at ``now`` (default: the present), oldest first, at most ``limit`` results and ``limit``
    crops. ``lock``: lock the due rows (PostgreSQL, inside the purge's write transaction)."""
    out = Plan(time.time() if now is None else now, policy)
    closed = closed_cases(conn)
    _due_results(conn, out, closed, limit, lock)
    _due_crops(conn, out, closed, limit, lock)
    result_cut = policy.cutoff(policy.results_days, out.at)
    if result_cut is not None:  # identifications an undecided result's days would have removed
        older = select(func.count()).where(results.c.review_status == CONFIRMED, results.c.received_at < result_cut)
        out.kept_confirmed = int(conn.execute(older).scalar_one()) - out.by_status().get(CONFIRMED, 0)
    out.reviews = sum(
        int(conn.execute(select(func.count()).where(reviews.c.result_id.in_(c))).scalar_one())
        for c in _chunks([d.id for d in out.results])
    )
    return out


def _due_results(conn: Connection, out: Plan, closed: Mapping[str, float], limit: int, lock: bool) -> None:
    policy, decided_at = out.policy, func.coalesce(results.c.reviewed_at, results.c.received_at)
    conds = []
    for statuses, days, when in (
        (UNDECIDED, policy.results_days, results.c.received_at),
        (REVIEWED, policy.reviewed_days, decided_at),
        ((CONFIRMED,), policy.confirmed_days, decided_at),
    ):
        cut = policy.cutoff(days, out.at)
        if cut is not None:
            conds.append(and_(results.c.review_status.in_(statuses), when < cut))
    if not conds:
        return
    q = (
        select(
            results.c.id,
            results.c.device_id,
            results.c.review_status,
            results.c.received_at,
            results.c.reviewed_at,
            CASE_PAYLOAD,
        )
        .where(or_(*conds))
        .order_by(results.c.received_at, results.c.id)
    )
    for r in stream_rows(conn, q.with_for_update() if lock else q):
        own = float(r.received_at if r.review_status in UNDECIDED or r.reviewed_at is None else r.reviewed_at)
        tag = case_tag_of(r.case_payload)
        start = _age_from(policy, own, tag, closed)
        cut = policy.cutoff(policy.days_for(r.review_status), out.at)
        if start is None or cut is None or start >= cut:
            out.kept_case += 1
        elif len(out.results) >= limit:
            out.more = True
            return
        else:
            out.results.append(Due(r.id, r.device_id, r.review_status, float(r.received_at), tag))


def _due_crops(conn: Connection, out: Plan, closed: Mapping[str, float], limit: int, lock: bool) -> None:
    cut = out.policy.cutoff(out.policy.crops_days, out.at)
    if cut is None or out.more:  # crops once every due result is in a batch: never strip one that goes anyway
        return
    going = {d.id for d in out.results}
    q = (
        select(results.c.id, results.c.device_id, results.c.review_status, results.c.received_at, CASE_PAYLOAD)
        .where(
            results.c.review_status != CONFIRMED,
            results.c.crop_purged_at.is_(None),
            results.c.received_at < cut,
            results.c.payload.like('%"crop":{%'),
        )
        .order_by(results.c.received_at, results.c.id)
    )
    for r in stream_rows(conn, q.with_for_update() if lock else q):
        if r.id in going:
            continue
        tag = case_tag_of(r.case_payload)
        start = _age_from(out.policy, float(r.received_at), tag, closed)
        if start is None or start >= cut:
            out.kept_case_crops += 1
        elif len(out.crops) >= limit:
            out.more = True
            return
        else:
            out.crops.append(Due(r.id, r.device_id, r.review_status, float(r.received_at), tag))


def _exported_results(conn: Connection, ids: Sequence[str]) -> Iterator[bytes]:
    """Each result going, as stored, with its review records (streamed: a run's payloads may not fit in memory)."""
    for chunk in _chunks(ids):
        history: dict[str, list[dict[str, Any]]] = {}
        for rv in conn.execute(
            select(reviews, users.c.username)
            .join(users, users.c.id == reviews.c.user_id)
            .where(reviews.c.result_id.in_(chunk))
            .order_by(reviews.c.id)
        ).all():
            history.setdefault(rv.result_id, []).append(
                {
                    "reviewer": rv.username,
                    "verdict": rv.verdict,
                    "identity_id": rv.identity_id,
                    "comment": rv.comment,
                    "created_at": rv.created_at,
                }
            )
        q = select(results).where(results.c.id.in_(chunk)).order_by(results.c.received_at, results.c.id)
        for r in conn.execute(q).all():
            row = {k: v for k, v in r._mapping.items() if k != "payload"}
            yield line({**row, "reviews": history.get(r.id, [])}, {"payload": r.payload})


def _exported_crops(conn: Connection, ids: Sequence[str]) -> Iterator[bytes]:
    for chunk in _chunks(ids):
        q = (
            select(results.c.id, results.c.device_id, results.c.received_at, results.c.payload)
            .where(results.c.id.in_(chunk))
            .order_by(results.c.received_at, results.c.id)
        )
        for r in conn.execute(q).all():
            crop = payload_value(r.payload, "crop")
            yield line({"id": r.id, "device_id": r.device_id, "received_at": r.received_at, "crop": crop})


def _apply(conn: Connection, p: Plan) -> None:
    ids = [d.id for d in p.results]
    for chunk in _chunks(ids):
        conn.execute(delete(reviews).where(reviews.c.result_id.in_(chunk)))
        conn.execute(delete(results).where(results.c.id.in_(chunk)))
    for chunk in _chunks([d.id for d in p.crops]):
        for r in conn.execute(select(results.c.id, results.c.payload).where(results.c.id.in_(chunk))).all():
            doc = json.loads(r.payload)
            doc.pop("crop", None)
            text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
            conn.execute(update(results).where(results.c.id == r.id).values(payload=text, crop_purged_at=p.at))


def ids_digest(ids: Sequence[str]) -> str:
    """SHA-256 of the sorted ids, one per line (the audit entry's fingerprint of what went)."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


@dataclass(frozen=True)
class Report:
    """A finished purge: the plan it carried out, where it exported, its audit entry."""

    plan: Plan
    export: Path | None
    export_manifest_sha256: str | None
    audit_seq: int

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.plan.summary(),
            "export": str(self.export) if self.export else None,
            "export_manifest_sha256": self.export_manifest_sha256,
            "audit_seq": self.audit_seq,
        }


def purge(
    db: Database,
    policy: Policy,
    *,
    export_dir: Path | None,
    actor: str = "cli",
    now: float | None = None,
    limit: int = 5000,
) -> Report:
    """Export (unless ``export_dir`` is None), delete and audit what is due, in one transaction."""
    with db.write() as conn:
        p = plan(conn, policy, now=now, limit=limit, lock=not db.is_sqlite)
        ids = [d.id for d in p.results]
        crop_ids = [d.id for d in p.crops]
        exp = None
        if export_dir is not None:
            exp = write_export(
                export_dir,
                at=p.at,
                results=_exported_results(conn, ids),
                crops=_exported_crops(conn, crop_ids),
                summary=p.as_dict(),
            )
        try:
            _apply(conn, p)
            entry = audit.append(
                conn,
                actor,
                "retention.purge",
                str(exp.path) if exp else "no export",
                {
                    **p.summary(),
                    "export": str(exp.path) if exp else None,
                    "export_manifest_sha256": exp.manifest_sha256 if exp else None,
                    "result_ids_sha256": ids_digest(ids),
                    "crop_ids_sha256": ids_digest(crop_ids),
                },
            )
        except Exception:
            log.error("server.retention.failed", export=str(exp.path) if exp else None, results=len(ids))
            raise
    log.info(
        "server.retention.purged",
        results=len(ids),
        crops=len(crop_ids),
        reviews=p.reviews,
        export=str(exp.path) if exp else None,
        audit_seq=entry.seq,
    )
    return Report(p, exp.path if exp else None, exp.manifest_sha256 if exp else None, entry.seq)


def purge_all(
    db: Database,
    policy: Policy,
    *,
    export_dir: Path | None,
    actor: str = "cli",
    now: float | None = None,
    limit: int = 5000,
) -> list[Report]:
    """:func:`purge` batch after batch until nothing more is due: each batch is its own short transaction
    (on SQLite ingest waits for it), export folder and audit entry. A failing batch raises; the batches
    before it stay done."""
    reports = [purge(db, policy, export_dir=export_dir, actor=actor, now=now, limit=limit)]
    while reports[-1].plan.more:
        reports.append(purge(db, policy, export_dir=export_dir, actor=actor, now=now, limit=limit))
    return reports
