"""UUIDv7 ids (RFC 9562, section 5.7): time-ordered, unique, used as each result's idempotency key.

Layout: 48-bit Unix time in milliseconds, version 7, 12 bits ``rand_a``, variant 0b10, 62 bits
``rand_b``. Within one millisecond ``rand_a`` is a counter (RFC 9562 section 6.2, method 1) so ids
made by one process sort in creation order; the counter starts from a random value each
millisecond, so ids from different processes do not collide. If the counter overflows, the
timestamp is advanced by one millisecond rather than repeating or going backwards; a wall clock that
steps back is ignored (the last timestamp is kept), which keeps ids monotonic after NTP corrections.

Python 3.14 has ``uuid.uuid7``; this module keeps 3.10-3.13 supported without a dependency.
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_counter = 0

UUID7_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def uuid7(now_ms: int | None = None) -> uuid.UUID:
    """A new UUIDv7; ids from one process are strictly increasing."""
    global _last_ms, _counter
    rand = int.from_bytes(os.urandom(10), "big")
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    with _lock:
        if ms > _last_ms:
            _last_ms = ms
            _counter = (rand >> 64) & 0x7FF  # random start, leaves headroom for 2048 ids in this ms
        else:
            _counter += 1
            if _counter > 0xFFF:
                _last_ms += 1
                _counter = 0
        ms, counter = _last_ms, _counter
    rand_b = rand & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand_b
    return uuid.UUID(int=value)


def new_id() -> str:
    """A new UUIDv7 as its canonical lower-case string (what payloads carry)."""
    return str(uuid7())


def uuid7_time_ms(value: str | uuid.UUID) -> int:
    """The Unix time in milliseconds encoded in a UUIDv7."""
    u = value if isinstance(value, uuid.UUID) else uuid.UUID(value)
    return u.int >> 80


def is_uuid7(text: str) -> bool:
    """True for a canonical lower-case UUIDv7 string."""
    return bool(UUID7_PATTERN.match(text))
