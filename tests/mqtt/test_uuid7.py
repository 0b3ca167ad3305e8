"""UUIDv7 ids: layout per RFC 9562, order, uniqueness."""

from __future__ import annotations

import itertools
import sys
import threading
import time
import uuid

import pytest

import edgeface.outbox.uuid7  # noqa: F401  (the module, not the function the package re-exports)
from edgeface.outbox.uuid7 import is_uuid7, new_id, uuid7, uuid7_time_ms


@pytest.fixture(autouse=True)
def _own_generator_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from a fresh generator and puts the process's back after it: the tests below feed it
    times in 2023 and 2027, and the generator never goes back, so without this every id made later in the same
    pytest process (by any test) would carry a 2027 time."""
    module = sys.modules["edgeface.outbox.uuid7"]
    monkeypatch.setattr(module, "_last_ms", 0)
    monkeypatch.setattr(module, "_counter", 0)


def test_layout_version_variant_and_time() -> None:
    before = time.time_ns() // 1_000_000
    u = uuid7()
    after = time.time_ns() // 1_000_000
    assert u.version == 7
    assert u.variant == uuid.RFC_4122
    assert before <= uuid7_time_ms(u) <= after
    assert is_uuid7(str(u))


def test_ids_from_one_process_are_strictly_increasing_even_within_one_millisecond() -> None:
    ids = [uuid7(now_ms=1_700_000_000_000) for _ in range(5000)]  # > 4096: the counter overflows
    assert all(a.int < b.int for a, b in itertools.pairwise(ids))
    assert all(i.version == 7 for i in ids)


def test_a_clock_that_steps_back_does_not_reorder_ids() -> None:
    a = uuid7(now_ms=1_800_000_000_000)
    b = uuid7(now_ms=1_799_999_999_000)
    assert b.int > a.int


def test_unique_across_threads() -> None:
    out: list[str] = []
    lock = threading.Lock()

    def make() -> None:
        mine = [new_id() for _ in range(2000)]
        with lock:
            out.extend(mine)

    threads = [threading.Thread(target=make) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(out)) == len(out) == 8000


def test_is_uuid7_rejects_other_versions_and_forms() -> None:
    assert not is_uuid7(str(uuid.uuid4()))
    assert not is_uuid7(new_id().upper())
    assert not is_uuid7("not-a-uuid")
