"""Malformed MQTT messages the ingest refused (the ``rejected`` table): counts and the newest few, for
the fleet page. Everything here came from the network unchecked: templates render it as escaped text
(never the payload as HTML), and only administrators see the start of a payload."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, case, func, select

from ..mqtt.topics import parse_device_topic
from .tables import rejected

DAY_S = 86400.0
HEAD_SHOWN = 120  # characters of a payload's start shown to administrators


@dataclass(frozen=True)
class Count:
    key: str
    total: int
    last_24h: int


@dataclass(frozen=True)
class Recent:
    received_at: float
    topic: str
    kind: str
    error: str
    size: int
    head: str  # the payload's start as text (undecodable bytes replaced), for escaped display


@dataclass
class RejectedSummary:
    total: int = 0
    last_24h: int = 0
    by_kind: list[Count] = field(default_factory=list)
    by_device: list[Count] = field(default_factory=list)
    recent: list[Recent] = field(default_factory=list)


def device_of(topic: str) -> str | None:
    """The device a topic names (``edgeface/v1/devices/<id>/results|status``), else None."""
    parsed = parse_device_topic(topic)
    return parsed[0] if parsed is not None and parsed[1] in ("results", "status") else None


def _add(counts: dict[str, list[int]], key: str, n: int, day: int) -> None:
    c = counts.setdefault(key, [0, 0])
    c[0] += n
    c[1] += day


def _sorted(counts: dict[str, list[int]]) -> list[Count]:
    return sorted((Count(k, t, d) for k, (t, d) in counts.items()), key=lambda c: (-c.total, c.key))


def summary(conn: Connection, *, now: float | None = None, recent: int = 10) -> RejectedSummary:
    """Totals, the last 24 hours, by kind and by device, and the ``recent`` newest messages."""
    since = (time.time() if now is None else now) - DAY_S
    day = func.sum(case((rejected.c.received_at >= since, 1), else_=0))
    out = RejectedSummary()
    kinds: dict[str, list[int]] = {}
    devices: dict[str, list[int]] = {}
    for r in conn.execute(
        select(rejected.c.topic, rejected.c.kind, func.count().label("n"), day.label("day")).group_by(
            rejected.c.topic, rejected.c.kind
        )
    ):
        n, d = int(r.n), int(r.day or 0)
        out.total += n
        out.last_24h += d
        _add(kinds, r.kind, n, d)
        device = device_of(r.topic)
        if device is not None:
            _add(devices, device, n, d)
    out.by_kind, out.by_device = _sorted(kinds), _sorted(devices)
    rows = conn.execute(select(rejected).order_by(rejected.c.id.desc()).limit(recent)).all()
    out.recent = [Recent(float(r.received_at), r.topic, r.kind, r.error, int(r.size), _text(r.head)) for r in rows]
    return out


def _text(head: Any) -> str:
    return bytes(head or b"")[: HEAD_SHOWN * 4].decode("utf-8", "replace")[:HEAD_SHOWN]
