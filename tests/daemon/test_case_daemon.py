"""Case and place through the daemon with the real models: five photos of one person in a folder are five
results (separate photos are not merged unless dedup.merge_photos says so); a photo's case comes from its
folder, a QR code beside the face wins over the folder; the place from the photo's EXIF GPS, else the
configured place; the MQTT capture command's args.tag reaches the result of the frames it took."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeface.config import Config
from edgeface.daemon import Daemon
from edgeface.mqtt import payloads
from edgeface.outbox import Outbox
from edgeface.testing import case_photos

MakeUnit = Callable[..., tuple[Config, Path]]


def outbox_docs(config: Config) -> list[dict[str, Any]]:
    with Outbox.for_unit(config) as box:
        rows = box.fetch(1000)
    return [payloads.decode(r.payload, "result", max_bytes=1 << 20) for r in rows]


def five_photos(lfw_people: dict[str, list[Path]], inbox: Path) -> list[Path]:
    """Five LFW photos of one person, copied within 5 s of each other (one dedup window apart: 0)."""
    inbox.mkdir(parents=True, exist_ok=True)
    out = []
    t0 = time.time() - 600
    for i, src in enumerate(lfw_people["George_W_Bush"][:5]):
        dst = inbox / f"{i}.jpg"
        dst.write_bytes(src.read_bytes())
        os.utime(dst, (t0 + i, t0 + i))
        out.append(dst)
    return out


def test_five_photos_of_one_person_are_five_results(make_unit: MakeUnit, lfw_people: dict[str, list[Path]]) -> None:
    config, _ = make_unit(**{"capture.folder": {"once": True}}, dedup={"window_s": 10.0})  # the default window
    five_photos(lfw_people, Path(config.capture.folder.path))
    d = Daemon(config, install_signals=False)
    assert d.run() == 0
    docs = outbox_docs(config)
    assert len(docs) == 5 and sorted(doc["source"] for doc in docs) == [f"{i}.jpg" for i in range(5)]
    assert d.summary.merged == 0


def test_merge_photos_folds_them_as_before(make_unit: MakeUnit, lfw_people: dict[str, list[Path]]) -> None:
    config, _ = make_unit(**{"capture.folder": {"once": True}}, dedup={"window_s": 10.0, "merge_photos": True})
    five_photos(lfw_people, Path(config.capture.folder.path))
    d = Daemon(config, install_signals=False)
    assert d.run() == 0
    assert len(outbox_docs(config)) < 5 and d.summary.merged > 0


def test_folder_qr_code_exif_and_static_place(make_unit: MakeUnit, lfw_people: dict[str, list[Path]]) -> None:
    config, _ = make_unit(
        **{"capture.folder": {"once": True}},
        **{"capture.location": {"sources": ["exif", "static"], "lat": 51.5, "lon": -0.12, "accuracy_m": 100.0}},
    )
    inbox = Path(config.capture.folder.path)
    bush, blair = lfw_people["George_W_Bush"], lfw_people["Tony_Blair"]
    (inbox / "CASE-17").mkdir()
    (inbox / "CASE-17" / "a.jpg").write_bytes(bush[0].read_bytes())  # the folder's case, the static place
    case_photos.beside(blair[0], case_photos.qr_image("BODY-0042"), inbox / "CASE-17" / "b.jpg")  # QR wins
    case_photos.with_gps(blair[1], inbox / "c.jpg", -33.857067, 151.21, 5.0)  # no case; EXIF place
    d = Daemon(config, install_signals=False)
    assert d.run() == 0
    by = {doc["source"]: doc for doc in outbox_docs(config)}
    assert set(by) == {"CASE-17/a.jpg", "CASE-17/b.jpg", "c.jpg"}
    assert by["CASE-17/a.jpg"]["case"] == {"tag": "CASE-17", "source": "folder"}
    assert by["CASE-17/b.jpg"]["case"] == {"tag": "BODY-0042", "source": "qrcode"}
    assert "case" not in by["c.jpg"]
    static = {"lat": 51.5, "lon": -0.12, "accuracy_m": 100.0, "source": "static"}
    assert by["CASE-17/a.jpg"]["location"] == static == by["CASE-17/b.jpg"]["location"]
    assert by["c.jpg"]["location"] == {"lat": -33.857067, "lon": 151.21, "accuracy_m": 5.0, "source": "exif"}


def test_capture_command_tag_reaches_the_result(make_unit: MakeUnit, lfw_people: dict[str, list[Path]]) -> None:
    from test_daemon import FakeCamera

    from edgeface.vision.imageio import load_image

    config, _ = make_unit(
        capture={"mode": "trigger", "triggers": ["command"], "frames_per_trigger": 1},
        **{"capture.location": {"sources": ["gpsd"], "gpsd_port": 1}},  # nothing listens: no place
    )
    cam = FakeCamera(load_image(lfw_people["George_W_Bush"][0]), [], endless=True)
    d = Daemon(config, source=cam, install_signals=False)
    t = threading.Thread(target=d.run)
    t.start()
    try:
        assert d.running.wait(60)
        d.on_command({"command": "capture", "args": {"tag": "  BODY 9 "}})
        d.on_command({"command": "capture"})
        deadline = time.monotonic() + 60
        while d.tally.summary.frames < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        d.request_stop()
        t.join(60)
    docs = sorted(outbox_docs(config), key=lambda doc: doc["captured_at"])
    assert len(docs) == 2  # two triggers of one person: two results
    assert docs[0]["case"] == {"tag": "BODY 9", "source": "command"} and "case" not in docs[1]
    assert "location" not in docs[0]


def test_codes_on_a_continuous_stream_only_when_asked(
    make_unit: MakeUnit, lfw_people: dict[str, list[Path]], tmp_path: Path
) -> None:
    from test_daemon import FakeCamera

    from edgeface.vision.imageio import load_image

    photo = case_photos.beside(lfw_people["Tony_Blair"][0], case_photos.qr_image("BODY-S"), tmp_path / "s.jpg")
    cases = []
    for streams in (False, True):
        config, _ = make_unit(
            with_gallery=False, capture={"mode": "continuous", "fps": 0}, **{"capture.tags": {"streams": streams}}
        )
        Path(config.outbox.path).unlink(missing_ok=True)
        d = Daemon(config, source=FakeCamera(load_image(photo), ["frame"]), install_signals=False)
        assert d.run() == 0
        cases.append([doc.get("case") for doc in outbox_docs(config)])
    assert cases == [[None], [{"tag": "BODY-S", "source": "qrcode"}]]
