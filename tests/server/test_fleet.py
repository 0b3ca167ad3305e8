"""The fleet page: malformed MQTT messages the ingest refused, counted and shown as escaped text."""

from __future__ import annotations

import re
import time
from typing import Any

from sqlalchemy import insert

from edgeface.server.ingest import DbResultStore
from edgeface.server.rejected import device_of, summary
from edgeface.server.tables import rejected

from .conftest import Browser

HOUR = 3600.0


def _reject(db: Any, topic: str, kind: str, error: str, head: bytes, age_s: float) -> None:
    with db.write() as conn:
        conn.execute(
            insert(rejected).values(
                received_at=time.time() - age_s, topic=topic, kind=kind, error=error, size=len(head) + 1000, head=head
            )
        )


def _cells(html: str, table: str) -> list[list[str]]:
    body = re.search(rf'<table id="{table}">(.*?)</table>', html, re.S)
    assert body, f"no table {table}"
    return [
        re.findall(r"<td>(.*?)</td>", row, re.S)
        for row in re.findall(r"<tr>(.*?)</tr>", body.group(1), re.S)
        if "<td>" in row
    ]


def test_fleet_page_counts_and_shows_rejected_messages_escaped(
    db: Any, as_reviewer: Browser, as_admin: Browser
) -> None:
    assert "The ingest has refused no message." in as_reviewer.get("/fleet").get_data(as_text=True)
    for _ in range(3):  # two days old: counted in the total only
        _reject(db, "edgeface/v1/devices/unit-a/results", "schema", "old", b"{}", 48 * HOUR)
    _reject(db, "edgeface/v1/devices/unit-a/results", "json", "not JSON", b"\xff\xfe", 2 * HOUR)
    _reject(db, "edgeface/v1/devices/unit-b/status", "schema", "missing 'state'", b'{"device_id":"unit-b"}', HOUR)
    _reject(db, "edgeface/v1/devices/unit-b/other", "topic", "unknown topic", b"x", HOUR)  # names no device kind
    _reject(
        db,
        "edgeface/v1/devices/<img src=x onerror=alert(1)>/results",
        "schema",
        "<script>alert('error')</script>",
        b"<script>alert('head')</script>",
        60,
    )  # not a device id
    r = as_admin.get("/fleet")
    assert r.status_code == 200
    page = r.get_data(as_text=True)
    assert "7 kept, 4 in the last 24 h" in page
    assert _cells(page, "rejected-kinds") == [["schema", "5", "2"], ["json", "1", "1"], ["topic", "1", "1"]]
    assert _cells(page, "rejected-devices") == [["unit-a", "4", "1"], ["unit-b", "1", "1"]]
    recent = _cells(page, "rejected-recent")
    assert len(recent) == 7 and recent[0][2:5] == [
        "schema",
        "&lt;script&gt;alert(&#39;error&#39;)&lt;/script&gt;",
        "1030",
    ]
    # network data is text, never markup: no tag from a topic, an error or a payload reaches the page
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&#39;head&#39;)&lt;/script&gt;" in page  # administrators see the payload's start
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    reviewer_page = as_reviewer.get("/fleet").get_data(as_text=True)
    assert "7 kept, 4 in the last 24 h" in reviewer_page
    assert "alert(&#39;head&#39;)" not in reviewer_page and "Start of payload" not in reviewer_page


def test_rejected_from_the_ingest_store_are_summarised(db: Any) -> None:
    store = DbResultStore(db, rejected_keep=3)
    for i in range(5):
        store.reject(f"edgeface/v1/devices/unit-{i % 2}/results", "schema", f"error {i}", b"{" * 2000)
    with db.read() as conn:
        s = summary(conn)
    assert (s.total, s.last_24h) == (3, 3)  # rejected_keep bounds the table
    assert [(c.key, c.total) for c in s.by_device] == [("unit-0", 2), ("unit-1", 1)]
    assert [m.error for m in s.recent] == ["error 4", "error 3", "error 2"]
    assert all(len(m.head) <= 120 for m in s.recent)


def test_device_of_topic() -> None:
    assert device_of("edgeface/v1/devices/unit-1/results") == "unit-1"
    assert device_of("edgeface/v1/devices/unit-1/status") == "unit-1"
    assert device_of("edgeface/v1/devices/unit-1/commands") is None
    assert device_of("edgeface/v1/devices/a/b/results") is None
    assert device_of("other/v1/devices/unit-1/results") is None
