"""The figures behind the plots page, read from the server's database (no drawing here: see svg.py).

Days are UTC days of the result's capture time (``captured_ts``) or of the decision (``reviews.created_at``).
Every query is bounded: a window of days, or the newest ``MAX_REVIEWED`` reviewed results (their
candidates and thresholds read by the database's JSON function, not whole payloads with their crops).
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import JSON, Connection, Integer, cast, func, select

from ..scores import Scores
from ..tables import devices, publications, results, reviews

MAX_REVIEWED = 5000
DAY = 86400
VERDICTS = ("confirm", "reject", "unknown")


@dataclass
class ScoreDistribution:
    """Scores of reviewed candidates: the confirmed candidate's own score, or for a rejected result its
    top candidate's (the lead the reviewer turned down); on the score the decision used (raw cosine or
    normalised). ``thresholds`` counts the thresholds the units sent (one per gallery version, normally)."""

    confirmed: list[float] = field(default_factory=list)
    rejected: list[float] = field(default_factory=list)
    thresholds: Counter[float] = field(default_factory=Counter)
    spaces: Counter[str] = field(default_factory=Counter)
    off_list: int = 0  # confirmed as an identity that was not among the candidates: no score to plot
    truncated: bool = False  # more than MAX_REVIEWED reviewed results: the newest were read

    @property
    def threshold(self) -> float | None:
        """The most common threshold (None when nothing was reviewed)."""
        return self.thresholds.most_common(1)[0][0] if self.thresholds else None


def versions(conn: Connection) -> list[int]:
    """Gallery versions that results were matched against, newest first."""
    q = select(results.c.gallery_version).where(results.c.gallery_version.is_not(None)).distinct()
    return sorted((v for (v,) in conn.execute(q)), reverse=True)


def _version(q: Any, version: int | None) -> Any:
    return q if version is None else q.where(results.c.gallery_version == version)


def score_distribution(conn: Connection, version: int | None) -> ScoreDistribution:
    out = ScoreDistribution()
    q = _version(
        select(
            results.c.id,
            results.c.review_status,
            _payload_field(conn, "candidates"),
            _payload_field(conn, "threshold"),
            _payload_field(conn, "score_space"),
        )
        .where(results.c.review_status.in_(("confirmed", "rejected")))
        .order_by(results.c.received_at.desc())
        .limit(MAX_REVIEWED + 1),
        version,
    )
    rows = conn.execute(q).all()
    out.truncated = len(rows) > MAX_REVIEWED
    rows = rows[:MAX_REVIEWED]
    confirmed_as = _confirmed_identities(conn, [r.id for r in rows if r.review_status == "confirmed"])
    for r in rows:
        cands_json, thr, space = r[2], r[3], r[4]
        doc = {
            "candidates": json.loads(cands_json) if cands_json else [],
            "threshold": None if thr is None else float(thr),
            "score_space": space,
        }
        sc = Scores.of(doc)
        key = "normalised" if sc.normalised else "score"
        cands = doc.get("candidates") or []
        if r.review_status == "confirmed":
            chosen = [c for c in cands if c.get("identity_id") == confirmed_as.get(r.id)]
            if not chosen or chosen[0].get(key) is None:
                out.off_list += 1
                continue
            out.confirmed.append(float(chosen[0][key]))
        else:
            if not cands or cands[0].get(key) is None:
                continue
            out.rejected.append(float(cands[0][key]))
        if sc.threshold is not None:
            out.thresholds[float(sc.threshold)] += 1
        out.spaces[sc.space] += 1
    return out


def _payload_field(conn: Connection, key: str) -> Any:
    """One top-level field of the stored payload, read by the database (SQLite ``json_extract``,
    PostgreSQL ``json_extract_path_text``): the payloads' face crops are never read here. Arrays come as
    JSON text; numbers as numbers (SQLite) or text (PostgreSQL)."""
    if conn.dialect.name == "sqlite":
        return func.json_extract(results.c.payload, f"$.{key}")
    return func.json_extract_path_text(cast(results.c.payload, JSON), key)


def _confirmed_identities(conn: Connection, ids: list[str]) -> dict[str, str]:
    """The identity each result was last confirmed as."""
    out: dict[str, str] = {}
    for chunk in range(0, len(ids), 500):
        q = (
            select(reviews.c.result_id, reviews.c.identity_id)
            .where(reviews.c.result_id.in_(ids[chunk : chunk + 500]), reviews.c.verdict == "confirm")
            .order_by(reviews.c.id)
        )
        for rid, ident in conn.execute(q):
            if ident:
                out[rid] = ident
    return out


def bins(values: list[list[float]], threshold: float | None, width: float = 0.05) -> list[float]:
    """Bin edges every ``width`` covering [0, 1], the values and the threshold (normalised scores can
    pass 1, cosine can go below 0)."""
    seen = [v for vs in values for v in vs] + ([threshold] if threshold is not None else [])
    lo = min([0.0, *seen])
    hi = max([1.0, *seen])
    start = math.floor(round(lo / width, 9))
    stop = math.ceil(round(hi / width, 9))
    if hi >= stop * width:  # a value exactly on the top edge gets its own bin
        stop += 1
    return [round(i * width, 6) for i in range(start, stop + 1)]


def counts(values: list[float], edges: list[float]) -> list[int]:
    """How many values fall in each [edge, next edge) bin."""
    out = [0] * (len(edges) - 1)
    for v in values:
        for i in range(len(out)):
            if edges[i] <= v < edges[i + 1]:
                out[i] += 1
                break
    return out


def _day_of(conn: Connection, column: Any) -> Any:
    """The UTC day number of a UNIX time column, computed by the database (PostgreSQL's integer cast
    rounds, SQLite's truncates: floor where there is one)."""
    if conn.dialect.name == "sqlite":
        return cast(column / DAY, Integer)
    return cast(func.floor(column / DAY), Integer)


def day_labels(first: int, last: int) -> list[str]:
    return [time.strftime("%Y-%m-%d", time.gmtime(d * DAY)) for d in range(first, last + 1)]


def window(days: int, now: float | None = None) -> tuple[int, int]:
    """The first and last UTC day numbers of the last ``days`` days, today included."""
    today = int((now if now is not None else time.time()) // DAY)
    return today - days + 1, today


def reviewer_outcomes(conn: Connection, version: int | None, first: int, last: int) -> dict[str, list[int]]:
    """Decisions per verdict per day (every decision counts, a second reviewer's too)."""
    day = _day_of(conn, reviews.c.created_at).label("day")
    q = _version(
        select(day, reviews.c.verdict, func.count())
        .select_from(reviews.join(results, results.c.id == reviews.c.result_id))
        .where(reviews.c.created_at >= first * DAY, reviews.c.created_at < (last + 1) * DAY)
        .group_by(day, reviews.c.verdict),
        version,
    )
    out = {v: [0] * (last - first + 1) for v in VERDICTS}
    for d, verdict, n in conn.execute(q):
        if verdict in out and first <= d <= last:
            out[verdict][d - first] += n
    return out


def device_days(conn: Connection, version: int | None, first: int, last: int) -> dict[str, list[int]]:
    """Results per device per day of capture, devices with the most results first."""
    day = _day_of(conn, results.c.captured_ts).label("day")
    q = _version(
        select(results.c.device_id, day, func.count())
        .where(results.c.captured_ts >= first * DAY, results.c.captured_ts < (last + 1) * DAY)
        .group_by(results.c.device_id, day),
        version,
    )
    out: dict[str, list[int]] = defaultdict(lambda: [0] * (last - first + 1))
    for dev, d, n in conn.execute(q):
        if first <= d <= last:
            out[dev][d - first] += n
    return dict(sorted(out.items(), key=lambda kv: (-sum(kv[1]), kv[0])))


@dataclass(frozen=True)
class FleetVersions:
    """How many devices report each gallery version (None: no gallery yet, or no status)."""

    counts: dict[int | None, int]
    latest: int | None  # the newest published version


def fleet_versions(conn: Connection) -> FleetVersions:
    counts: Counter[int | None] = Counter()
    for (status,) in conn.execute(select(devices.c.status).where(devices.c.revoked.is_(False))):
        v = (json.loads(status) if status else {}).get("gallery_version")
        counts[v if isinstance(v, int) else None] += 1
    latest = conn.execute(select(func.max(publications.c.version))).scalar()
    order = sorted((k for k in counts if k is not None), reverse=True) + ([None] if None in counts else [])
    return FleetVersions({k: counts[k] for k in order}, latest)
