"""The outbox's configuration section (``[outbox]``), assembled into :class:`edgeface.config.Config`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..config.fields import setting


@dataclass(frozen=True)
class OutboxConfig:
    """The disk outbox: results wait here, durable, until the broker acknowledged them (see docs/outbox-mqtt.md)."""

    path: Path = setting(Path("/var/lib/edgeface/outbox.sqlite3"), "SQLite file of pending results.")
    max_results: int = setting(100_000, "Most results held; at the limit on_full applies.", min=1)
    max_bytes: int = setting(256 * 1024**2, "Most payload bytes held; at the limit on_full applies.", min=4096)
    on_full: Literal["drop_oldest_no_match", "refuse"] = setting(
        "drop_oldest_no_match",
        "At a limit: 'drop_oldest_no_match' deletes the oldest refused, then no-match results (logged, "
        "counted; a candidate match is never dropped) and refuses new work when only matches are left; "
        "'refuse' refuses every new result until results drain. Refused work raises OutboxFull.",
    )
    ttl_s: float = setting(
        0.0,
        "Delete unsent no-match and refused results older than this (seconds, logged); 0 keeps them. Ages use "
        "the wall clock: on a unit without a real-time clock, the first NTP sync can age everything at once.",
        min=0,
    )
    match_ttl_s: float = setting(
        0.0, "Delete unsent candidate matches older than this (seconds, logged); 0 keeps them until sent.", min=0
    )
    max_quarantined: int = setting(
        1000, "Damaged rows kept in quarantine for inspection; the oldest go beyond this.", min=0
    )
    synchronous: Literal["full", "normal"] = setting(
        "full",
        "'full' fsyncs every stored result (survives power loss); 'normal' is faster but a power cut may "
        "roll back the last results stored (never corrupts). Keep 'full' unless storage is too slow.",
    )
    cache_kib: int = setting(
        1024,
        "SQLite page cache per outbox connection, in KiB (the daemon uses up to four: pipeline, publisher, status, "
        "retention). It fills as the outbox file grows, then stays: the unit's memory grows by at most this much "
        "per connection after start-up.",
        min=64,
        max=1048576,
    )
