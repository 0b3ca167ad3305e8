"""The folder source: once, in order, never half-read, across restarts (the ledger), crash retries."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from sample_photos import SAMPLE_PHOTOS, feed

from edgeface.capture import EndOfSource, Outcome
from edgeface.capture.folder import FolderSource
from edgeface.capture.settings import CaptureFolderConfig
from edgeface.errors import SourceUnavailable


def make(inbox: Path, state: Path, **kw: object) -> FolderSource:
    cfg = CaptureFolderConfig(path=inbox, **{"settle_s": 0.0, "poll_s": 0.01, **kw})  # type: ignore[arg-type]
    src = FolderSource(cfg, state)
    src.open()
    return src


def drain(src: FolderSource, limit: int = 100) -> list[str]:
    """Read until nothing is ready, marking each frame done; returns the files' relative paths in order."""
    out = []
    for _ in range(limit):
        f = src.read(timeout=0.2)
        if f is None:
            break
        out.append(f.meta["rel"])
        src.done(f, Outcome("done", 1, ("id",)))
    return out


def test_each_file_once_in_order_across_restarts(tmp_path: Path) -> None:
    inbox, state = tmp_path / "inbox", tmp_path / "state"
    inbox.mkdir()
    names = ["c.jpg", "a.jpg", "b.jpg"]  # modification times give the order, not names
    feed(inbox, SAMPLE_PHOTOS[:3], names)
    src = make(inbox, state)
    assert drain(src) == names
    src.shutdown()

    src = make(inbox, state)  # a restart: nothing is handed out twice
    assert drain(src) == []
    feed(inbox, SAMPLE_PHOTOS[3:4], ["d.jpg"], mtime0=time.time() - 10)
    assert drain(src) == ["d.jpg"]
    src.shutdown()


def test_temporary_names_and_other_files_are_never_read(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "DCIM" / "100CANON").mkdir(parents=True)
    data = SAMPLE_PHOTOS[0].read_bytes()
    for name in (".hidden.jpg", "x.jpg.part", "y.jpg.tmp", "z.jpg.crdownload", "w.jpg~", "notes.txt"):
        (inbox / name).write_bytes(data)
    (inbox / "DCIM" / "100CANON" / "IMG_0001.JPG").write_bytes(data)
    src = make(inbox, tmp_path / "state")
    assert drain(src) == [os.path.join("DCIM", "100CANON", "IMG_0001.JPG")]
    os.rename(inbox / "x.jpg.part", inbox / "x.jpg")  # the writer finished: now it is read
    assert drain(src) == ["x.jpg"]
    src.shutdown()


def test_a_file_being_written_is_read_only_once_it_settled(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    data = SAMPLE_PHOTOS[0].read_bytes()
    path = inbox / "slow.jpg"
    path.write_bytes(data[: len(data) // 2])  # half written, modification time: now
    src = make(inbox, tmp_path / "state", settle_s=0.5)
    assert src.read(timeout=0.1) is None
    with open(path, "ab") as f:
        f.write(data[len(data) // 2 :])
    deadline = time.monotonic() + 10
    frame = None
    while frame is None and time.monotonic() < deadline:
        frame = src.read(timeout=0.1)
    assert frame is not None and frame.meta["size"] == len(data)
    src.shutdown()


def test_a_changed_file_is_a_new_version(tmp_path: Path) -> None:
    inbox, state = tmp_path / "inbox", tmp_path / "state"
    inbox.mkdir()
    feed(inbox, SAMPLE_PHOTOS[:1], ["p.jpg"])
    src = make(inbox, state)
    assert drain(src) == ["p.jpg"]
    feed(inbox, SAMPLE_PHOTOS[1:2], ["p.jpg"], mtime0=time.time() - 5)  # same name, other content
    assert drain(src) == ["p.jpg"]
    src.shutdown()


def test_interrupted_files_are_retried_then_set_aside(tmp_path: Path) -> None:
    """A file handed out but never finished (the process died) is handed out again at start-up; after
    max_attempts interruptions it is recorded as failed instead of crashing the unit forever."""
    inbox, state = tmp_path / "inbox", tmp_path / "state"
    inbox.mkdir()
    feed(inbox, SAMPLE_PHOTOS[:2], ["poison.jpg", "fine.jpg"])
    for attempt in (1, 2):
        src = make(inbox, state, max_attempts=2)
        f = src.read(timeout=0.5)
        assert f is not None and f.meta["rel"] == "poison.jpg" and f.meta["attempt"] == attempt
        src.shutdown()  # "crash": never marked done
    src = make(inbox, state, max_attempts=2)
    assert drain(src) == ["fine.jpg"]
    assert src.ledger is not None
    rows = {r["path"]: r for r in src.ledger.rows()}
    assert rows["poison.jpg"]["status"] == "failed" and rows["fine.jpg"]["status"] == "done"
    src.shutdown()


def test_once_mode_ends_when_everything_is_processed(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    feed(inbox, SAMPLE_PHOTOS[:2])
    src = make(inbox, tmp_path / "state", once=True)
    got = []
    with pytest.raises(EndOfSource):
        for _ in range(10):
            f = src.read(timeout=0.2)
            if f is not None:
                got.append(f)
                src.done(f, Outcome("done"))
    assert len(got) == 2
    src.shutdown()


def test_missing_folder_is_unavailable_not_fatal(tmp_path: Path) -> None:
    cfg = CaptureFolderConfig(path=tmp_path / "card", settle_s=0.0, poll_s=0.01)
    src = FolderSource(cfg, tmp_path / "state")
    with pytest.raises(SourceUnavailable, match="does not exist"):
        src.open()
    (tmp_path / "card").mkdir()
    src.open()
    assert src.read(timeout=0.05) is None
    src.shutdown()
