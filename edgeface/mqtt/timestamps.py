"""Times in the MQTT payloads: RFC 3339 in UTC with a 'Z', e.g. ``2025-01-31T12:00:00.123Z``."""

from __future__ import annotations

import re
from datetime import datetime, timezone


def utc_timestamp(t: float | datetime | None = None) -> str:
    """RFC 3339 UTC with milliseconds and 'Z', e.g. ``2025-01-31T12:00:00.123Z`` (now when None)."""
    if t is None:
        dt = datetime.now(timezone.utc)
    elif isinstance(t, datetime):
        if t.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware (naive datetimes are ambiguous)")
        dt = t.astimezone(timezone.utc)
    else:
        dt = datetime.fromtimestamp(float(t), timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


_TIMESTAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:[.]([0-9]{1,6}))?Z", re.ASCII
)


def parse_timestamp(text: str) -> float:
    """Unix time of an RFC 3339 UTC timestamp as the payloads carry it (``...T12:00:00.5Z``).

    ``ValueError`` unless it is one and names a real instant (no month 13, no 30 February, no leap
    second: the devices never write one). The schemas assert the same through ``format: date-time``.
    """
    m = _TIMESTAMP.fullmatch(text)
    if not m:
        raise ValueError(f"{text[:40]!r} is not an RFC 3339 UTC timestamp like 2025-01-31T12:00:00.123Z")
    *parts, frac = m.groups()
    try:
        year, month, day, hour, minute, second = (int(p) for p in parts)
        dt = datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)
    except ValueError as e:
        raise ValueError(f"{text!r} is not a real time: {e}") from None
    return dt.timestamp() + (int(frac.ljust(6, "0")) / 1e6 if frac else 0.0)
