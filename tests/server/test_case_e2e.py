"""Acceptance for case and place (issue 15): a case tag from each of the four paths and a place from EXIF GPS
and from the static setting reach the review page, through real unit processes (`edgeface run`), a real
mosquitto and the server's ingest:

* a trigger-mode unit on a video of an LFW face, with a static place: `edgeface trigger --tag BODY-T` and an
  MQTT ``capture`` command with ``args.tag = BODY-M``;
* a folder unit: ``CASE-F/a.jpg`` (the folder's case), a photo with a QR code of ``BODY-Q`` beside the face
  (cv2.QRCodeEncoder), and a photo whose EXIF carries GPS tags (Pillow).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
from sqlalchemy import select

from edgeface.config import load_config
from edgeface.daemon import status as status_mod
from edgeface.mqtt import payloads, topics
from edgeface.server.tables import results
from edgeface.testing import case_photos
from edgeface.testing.mqttload import Child, wait_for
from edgeface.vision.imageio import load_image

from .conftest import Browser
from .test_ingest import _publisher, _worker


def _unit(tmp: Path, name: str, port: int, sections: dict[str, dict[str, Any]]) -> Path:
    root = tmp / name
    base: dict[str, dict[str, Any]] = {
        "device": {"id": name},
        "capture": {"retry_min_s": 0.05, "retry_max_s": 0.2},
        "capture.folder": {"path": str(root / "inbox"), "settle_s": 0.0, "poll_s": 0.05},
        "gallery": {"dir": str(root / "gallery"), "encrypt": False},
        "outbox": {"path": str(root / "outbox.sqlite3")},
        "run": {"state_dir": str(root / "state")},
        "retention": {"dir": str(root / "media")},
        "status": {"interval_s": 0.2, "metrics_port": 0},
        "mqtt": {"host": "127.0.0.1", "port": port, "tls": False, "reconnect_min_s": 0.05, "reconnect_max_s": 0.3},
    }
    for k, v in sections.items():
        base.setdefault(k, {}).update(v)
    (root / "inbox").mkdir(parents=True)
    lines = []
    for sec, values in base.items():
        lines.append(f"[{sec}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    path = root / "unit.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _video(face: Path, out: Path, frames: int = 5) -> Path:
    rgb = load_image(face)
    h, w = rgb.shape[:2]
    size = (w // 2 * 2, h // 2 * 2)
    vw = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), 5, size)
    for _ in range(frames):
        vw.write(cv2.cvtColor(rgb[: size[1], : size[0]], cv2.COLOR_RGB2BGR))
    vw.release()
    return out


def _stored(db: Any) -> dict[str, dict[str, Any]]:
    with db.read() as conn:
        return {r.id: json.loads(r.payload) for r in conn.execute(select(results.c.id, results.c.payload))}


def test_four_tag_paths_and_two_place_sources_reach_the_review_page(
    db: Any, broker: Any, as_reviewer: Browser, lfw_root: Path, tmp_path: Path
) -> None:
    bush = sorted((lfw_root / "images" / "George_W_Bush").glob("*.jpg"))
    blair = sorted((lfw_root / "images" / "Tony_Blair").glob("*.jpg"))
    trig = _unit(
        tmp_path,
        "unit-trig",
        broker.port,
        {
            "capture": {"source": "opencv", "mode": "trigger", "triggers": ["signal", "command"]},
            "capture.opencv": {"device": str(_video(bush[0], tmp_path / "face.avi")), "loop": True},
            "capture.location": {"sources": ["gpsd", "static"], "lat": 47.3769, "lon": 8.5417, "accuracy_m": 50.0},
        },
    )
    fold = _unit(tmp_path, "unit-fold", broker.port, {"capture.location": {"sources": ["exif"]}})
    inbox = tmp_path / "unit-fold" / "inbox"
    (inbox / "CASE-F").mkdir()
    (inbox / "CASE-F" / "a.jpg").write_bytes(bush[1].read_bytes())
    case_photos.beside(blair[0], case_photos.qr_image("BODY-Q"), inbox / "qr.jpg")
    case_photos.with_gps(blair[1], inbox / "gps.jpg", -33.857067, 151.21, 5.0)

    worker = _worker(db, broker.port, "ingest-case")
    children = [Child(["--config", str(p), "run"], p.parent / "run.log") for p in (trig, fold)]
    pub = _publisher(broker.port)
    try:
        for c in children:
            c.start()
        cfg = load_config(trig, env={})
        assert wait_for(
            lambda: status_mod.daemon_state(status_mod.read_status(status_mod.status_path(cfg))) == "running", 120
        ), children[0].log_tail()
        r = subprocess.run(
            [sys.executable, "-m", "edgeface", "--config", str(trig), "trigger", "--tag", " BODY-T "],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert r.returncode == 0 and r.stdout.strip().endswith("(tag 'BODY-T')"), r.stderr
        assert wait_for(
            lambda: len(_stored(db)) >= 1 and any(d["device_id"] == "unit-trig" for d in _stored(db).values()), 120
        ), children[0].log_tail()
        command = payloads.command_payload("capture", args={"tag": "BODY-M"})
        pub.publish(topics.commands_topic("unit-trig"), payloads.encode(command, "command"), qos=1).wait_for_publish(10)
        assert wait_for(lambda: len(_stored(db)) >= 5, 180), children[0].log_tail() + children[1].log_tail()
    finally:
        pub.loop_stop()
        for c in children:
            c.stop(60)
            c.kill()
        worker.stop()

    docs = list(_stored(db).values())
    by_tag = {d["case"]["tag"]: d for d in docs if "case" in d}
    assert {t: d["case"]["source"] for t, d in by_tag.items()} == {
        "BODY-T": "trigger",
        "BODY-M": "command",
        "CASE-F": "folder",
        "BODY-Q": "qrcode",
    }
    gps = next(d for d in docs if d.get("source") == "gps.jpg")
    static = {"lat": 47.3769, "lon": 8.5417, "accuracy_m": 50.0, "source": "static"}
    assert by_tag["BODY-T"]["location"] == static == by_tag["BODY-M"]["location"]
    assert gps["location"] == {"lat": -33.857067, "lon": 151.21, "accuracy_m": 5.0, "source": "exif"}

    sources = {
        "trigger": "trigger",
        "command": "capture command",
        "folder": "folder it was filed in",
        "qrcode": "QR code in the photo",
    }
    for tag, d in by_tag.items():
        page = as_reviewer.get(f"/review/{d['id']}").get_data(as_text=True)
        assert f'<a id="case" href="/cases/{tag}">{tag}</a>' in page
        assert f'id="case-source">from the {sources[d["case"]["source"]]}</span>' in page
        listed = as_reviewer.get(f"/cases/{tag}?format=json").get_json()
        assert [x["id"] for x in listed["results"]] == [d["id"]]
    page = as_reviewer.get(f"/review/{by_tag['BODY-T']['id']}").get_data(as_text=True)
    assert '<span id="place">47.37690, 8.54170 (±50 m)</span>' in page and "configured place" in page
    page = as_reviewer.get(f"/review/{gps['id']}").get_data(as_text=True)
    assert '<span id="place">-33.85707, 151.21000 (±5 m)</span>' in page and "EXIF GPS" in page
