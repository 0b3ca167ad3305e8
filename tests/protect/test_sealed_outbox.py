"""The outbox with payloads sealed under the device key: the same guarantees, nothing readable on disk."""

from __future__ import annotations

import json
import secrets
import sqlite3
import zlib
from pathlib import Path

import pytest

from edgeface.errors import OutboxError
from edgeface.outbox import Outbox, Priority, new_id
from edgeface.protect.sealed import Sealer, is_sealed

NAME = "Zebulon Quartermaine"  # a name that appears nowhere but in these payloads


def doc(rid: str, crop: bytes = b"") -> bytes:
    d = {"id": rid, "candidates": [{"identity_id": "zq-1", "name": NAME, "score": 0.812345}]}
    if crop:
        d["crop"] = {"jpeg_b64": crop.hex()}
    return json.dumps(d).encode()


def raw_files(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.iterdir() if p.name.startswith(path.name))


@pytest.fixture
def key() -> bytes:
    return secrets.token_bytes(32)


def test_payloads_are_sealed_on_disk_and_come_back_whole(tmp_path: Path, key: bytes) -> None:
    path = tmp_path / "o.sqlite3"
    box = Outbox(path, sealer=Sealer(key, "outbox"))
    ids = [new_id() for _ in range(3)]
    for i in ids:
        box.put(i, "edgeface/v1/devices/u/results", doc(i), Priority.MATCH)
    files = raw_files(path)  # the database, its WAL and SHM, as a seized card holds them
    assert NAME.encode() not in files and b"0.812345" not in files and b"candidates" not in files
    assert all(i.encode() in files for i in ids)  # ids stay clear for the bookkeeping
    stored = sqlite3.connect(path).execute("SELECT payload FROM pending").fetchall()
    assert len(stored) == 3 and all(is_sealed(r[0]) for r in stored)
    rows = box.fetch(10)
    assert [r.id for r in rows] == ids and [r.payload for r in rows] == [doc(i) for i in ids]
    box.ack(ids)
    assert box.pending_count() == 0
    box.close()


def test_a_payload_moved_to_another_row_or_key_does_not_open_and_is_quarantined(tmp_path: Path, key: bytes) -> None:
    path = tmp_path / "o.sqlite3"
    box = Outbox(path, sealer=Sealer(key, "outbox"))
    a, b, c = new_id(), new_id(), new_id()
    for i in (a, b, c):
        box.put(i, "t/results", doc(i), Priority.NO_MATCH)
    con = sqlite3.connect(path)
    blob_a = con.execute("SELECT payload FROM pending WHERE id = ?", (a,)).fetchone()[0]
    con.execute("UPDATE pending SET payload = ?, crc = ? WHERE id = ?", (blob_a, zlib.crc32(blob_a), b))
    con.commit()
    con.close()
    rows = box.fetch(10)
    assert [r.id for r in rows] == [a, c]
    q = box.quarantined()
    assert [r["id"] for r in q] == [b] and "does not open" in q[0]["reason"]
    box.close()
    other = Outbox(path, sealer=Sealer(secrets.token_bytes(32), "outbox"))  # another unit's key
    assert other.fetch(10) == [] and {r["id"] for r in other.quarantined()} == {a, b, c}
    other.close()


def test_a_sealed_outbox_still_sends_rows_stored_before_encryption(tmp_path: Path, key: bytes) -> None:
    path = tmp_path / "o.sqlite3"
    old = new_id()
    with Outbox(path) as plain:
        plain.put(old, "t/results", doc(old), Priority.MATCH)
    new = new_id()
    with Outbox(path, sealer=Sealer(key, "outbox")) as box:
        box.put(new, "t/results", doc(new), Priority.MATCH)
        assert [(r.id, r.payload) for r in box.fetch(10)] == [(old, doc(old)), (new, doc(new))]


def test_sealed_rows_without_the_key_are_an_error_not_a_silent_quarantine(tmp_path: Path, key: bytes) -> None:
    path = tmp_path / "o.sqlite3"
    rid = new_id()
    with Outbox(path, sealer=Sealer(key, "outbox")) as box:
        box.put(rid, "t/results", doc(rid), Priority.MATCH)
    with Outbox(path) as box, pytest.raises(OutboxError, match="without the device key"):
        box.fetch(10)
    with Outbox(path) as box:
        assert box.quarantined() == [] and box.pending_count() == 1


def test_an_outbox_of_the_format_before_sealing_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    Outbox(path).close()
    con = sqlite3.connect(path)
    con.execute("PRAGMA user_version = 1")  # written by an edgeface that never sealed
    con.commit()
    con.close()
    Outbox(path).close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 2
