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
    with (
        Outbox(path) as box,
        pytest.raises(
            OutboxError,
            match=r"without the device key; open it with protect.encrypt on and the unit's device key \(gallery",
        ),
    ):
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


# A record sealed by this format's first release (key bytes 0..31, purpose "outbox", bound to "r-1"): every later
# edgeface must open it, or an upgraded unit would quarantine the results it holds (issue 17).
V1_KEY = bytes(range(32))
V1_RECORD = bytes.fromhex("4546533126c97edf9a8a5bc6ae756e987da1b9b6ab779c3e2ed010da3edac901b1948c16c3d27d3be1926c196e")
V1_OUTBOX_SUB_KEY = "3ccfbf5097d47aca6dc24a8aa6ab3e8ad97ab3afc678ab0e6c70f5e575a4f6e3"


def test_records_sealed_by_the_first_format_still_open() -> None:
    from edgeface.protect.sealed import SealError, sub_key

    assert Sealer(V1_KEY, "outbox").open(V1_RECORD, b"r-1") == b'{"id": "r-1"}'
    assert sub_key(V1_KEY, "outbox").hex() == V1_OUTBOX_SUB_KEY  # HKDF-SHA256, info edgeface-protect-outbox-v1
    assert sub_key(V1_KEY, "media") != sub_key(V1_KEY, "outbox") and len(sub_key(V1_KEY, "media")) == 32
    for aad in (b"", b"r-2"):  # bound to its row
        with pytest.raises(
            SealError,
            match="does not open with this device key: the key is another unit's or was replaced, or the record "
            "was altered or moved",
        ):
            Sealer(V1_KEY, "outbox").open(V1_RECORD, aad)
    with pytest.raises(SealError, match="a sealed media record does not open"):  # another purpose: another key
        Sealer(V1_KEY, "media").open(V1_RECORD, b"r-1")


def test_a_sealed_record_has_its_header_a_fresh_nonce_and_nothing_else(key: bytes) -> None:
    from edgeface.protect.sealed import OVERHEAD, SealError

    s = Sealer(key, "outbox")
    a, b = s.seal(b"same", b"id"), s.seal(b"same", b"id")
    assert a[:4] == b[:4] == b"EFS1" and a[4:16] != b[4:16] and a != b  # a fresh nonce per record
    assert len(a) == OVERHEAD + 4 == 4 + 12 + 16 + 4
    assert s.open(a, b"id") == s.open(b, b"id") == b"same"
    empty = s.seal(b"")
    assert len(empty) == OVERHEAD and s.open(empty) == b""  # the shortest record there is
    for blob in (b"", b"EFS", b"EFS1" + bytes(27), b'{"id": 1}', b"\xff\xd8\xff\xe0" + bytes(40)):
        with pytest.raises(SealError, match="not a sealed outbox record"):
            s.open(blob)
    assert not is_sealed(b"EFS") and not is_sealed(b"{}") and is_sealed(b"EFS1...")
    assert repr(s) == "Sealer(purpose='outbox')" and key.hex() not in repr(s)


def test_a_sealed_file_is_private_replaces_the_old_one_and_names_itself_when_it_does_not_open(
    tmp_path: Path, key: bytes
) -> None:
    from edgeface.protect.sealed import SealError

    s = Sealer(key, "media")
    path = tmp_path / "face.jpg"
    (tmp_path / "face.jpg.tmp").write_bytes(b"x" * 5000)  # left by a power cut during an earlier write
    s.write_file(path, b"first version, quite a bit longer")
    s.write_file(path, b"second")
    assert s.read_file(path) == b"second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face.jpg"]  # written beside it, then moved over it
    assert path.stat().st_mode & 0o777 == 0o600
    assert is_sealed(path.read_bytes()) and b"second" not in path.read_bytes()
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(SealError, match=rf"^{path}: a sealed media record does not open"):
        s.read_file(path)


def test_the_units_outbox_is_sealed_with_its_device_key_when_encrypt_is_on(tmp_path: Path) -> None:
    from edgeface.config import load_config
    from edgeface.gallery.crypto import generate_key_file
    from edgeface.protect.keys import load_unit_key

    key_file = tmp_path / "usb" / "device.key"
    key_file.parent.mkdir()
    generate_key_file(key_file)
    sets = [f"gallery.key_file={key_file}", f"outbox.path={tmp_path / 'o.sqlite3'}", "outbox.max_results=9"]
    config = load_config(None, env={}, overrides=[*sets, "protect.encrypt=true"])
    rid = new_id()
    with Outbox.for_unit(config) as box:
        assert box.sealer is not None and box.sealer.purpose == "outbox" and box.max_results == 9
        box.put(rid, "t/results", doc(rid), Priority.MATCH)
    stored = sqlite3.connect(tmp_path / "o.sqlite3").execute("SELECT payload FROM pending").fetchone()[0]
    assert Sealer(load_unit_key(config).key, "outbox").open(stored, rid.encode()) == doc(rid)
    plain = load_config(None, env={}, overrides=[*sets, "protect.encrypt=false"])
    with Outbox.for_unit(plain) as box:
        assert box.sealer is None
