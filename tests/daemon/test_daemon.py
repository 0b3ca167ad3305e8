"""The daemon in-process with the real models: results per face, every file accounted for, stage restarts,
poison frames, camera loss and backoff, dropping live frames, trigger mode, dedup, retention."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sample_photos import SAMPLE_PHOTOS, feed

from edgeface.capture import EndOfSource, Frame, Source
from edgeface.capture.folder import FolderLedger, ledger_path
from edgeface.config import Config
from edgeface.daemon import Daemon
from edgeface.daemon import status as status_mod
from edgeface.daemon.retention import Retention
from edgeface.errors import ConfigError, SourceUnavailable
from edgeface.mqtt import payloads
from edgeface.outbox import Outbox
from edgeface.vision.engine import Engine
from edgeface.vision.imageio import load_image

MakeUnit = Callable[..., tuple[Config, Path]]


def outbox_docs(config: Config) -> list[dict[str, Any]]:
    with Outbox.for_unit(config) as box:
        rows = box.fetch(1000)
    return [payloads.decode(r.payload, "result", max_bytes=1 << 20) for r in rows]


def ledger(config: Config) -> dict[str, dict[str, Any]]:
    led = FolderLedger(ledger_path(config.run.state_dir, config.capture.folder.path))
    try:
        return {r["path"]: r for r in led.rows()}
    finally:
        led.close()


def run(config: Config, **kw: Any) -> Daemon:
    d = Daemon(config, install_signals=False, **kw)
    assert d.run() == 0
    return d


class FakeCamera(Source):
    """A live camera driven by a script: open() fails ``open_failures`` times; read() follows ``script``
    ('frame', 'lost', 'end'); after the script it keeps giving frames if ``endless``."""

    kind = "fake"

    def __init__(
        self,
        image: np.ndarray,
        script: list[str],
        open_failures: int = 0,
        endless: bool = False,
        t0: float = 1_700_000_000.0,
        dt: float = 0.2,
    ) -> None:
        super().__init__("fakecam")
        self.image, self.script, self.open_failures, self.endless = image, list(script), open_failures, endless
        self.opens = self.open_attempts = 0
        self.t, self.dt = t0, dt
        self.exhausted = threading.Event()

    def open(self) -> None:
        self.open_attempts += 1
        if self.open_failures > 0:
            self.open_failures -= 1
            raise SourceUnavailable("fake camera not plugged in")
        self.opens += 1

    def read(self, timeout: float) -> Frame | None:
        step = self.script.pop(0) if self.script else ("frame" if self.endless else "end")
        if not self.script:
            self.exhausted.set()
        if step == "lost":
            raise SourceUnavailable("fake camera unplugged")
        if step == "end":
            raise EndOfSource("script over")
        self.t += self.dt
        seq = self.next_seq()
        return Frame(source=self.name, key=f"fake:{seq}:{self.t}", captured_at=self.t, seq=seq, image=self.image.copy())

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def face_image() -> np.ndarray:
    return load_image(SAMPLE_PHOTOS[0])


def test_folder_run_stores_one_result_per_face_and_accounts_for_every_file(make_unit: MakeUnit, tmp_path: Path) -> None:
    config, _ = make_unit(**{"capture.folder": {"once": True}})
    inbox = Path(config.capture.folder.path)
    feed(inbox, SAMPLE_PHOTOS)
    (inbox / "zz-broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    d = run(config)
    assert d.summary.results == {"match": 2, "no_match": 1, "refused": 1} and d.summary.unreadable == 1
    docs = outbox_docs(config)  # each payload follows the schema and the contract
    assert len(docs) == 4 and all(doc["device_id"] == "unit-test" for doc in docs)
    by_source = {doc["source"]: doc for doc in docs}
    assert by_source["000-01-obama-address-to-congress.jpg"]["candidates"][0]["identity_id"] == "barack-obama"
    rows = ledger(config)
    assert {r["status"] for n, r in rows.items() if n != "zz-broken.jpg"} == {"done"}
    assert rows["zz-broken.jpg"]["status"] == "unreadable"
    assert sorted(i for r in rows.values() for i in r["results"]) == sorted(doc["id"] for doc in docs)
    st = status_mod.gather(config)
    assert st["daemon"] == "stopped" and st["outbox"]["pending"] == 4 and st["gallery"]["version"] == 1


def test_a_crashed_stage_is_restarted_and_its_frame_retried(
    make_unit: MakeUnit, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    config, _ = make_unit(**{"capture.folder": {"once": True}})
    feed(Path(config.capture.folder.path), SAMPLE_PHOTOS[:2])
    real = Engine.detect
    calls = {"n": 0}

    def flaky(self: Engine, image: np.ndarray) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("injected: interpreter blew up")
        return real(self, image)

    monkeypatch.setattr(Engine, "detect", flaky)
    d = run(config)
    assert d.summary.stage_restarts == 1 and d.summary.failed == 0
    assert sum(d.summary.results.values()) == 2  # the frame in the crashed thread's hands was not lost
    events = [r.getMessage() for r in caplog.records]
    assert "stage.crashed" in events and "stage.restarted" in events


def test_a_frame_that_crashes_every_time_is_recorded_as_failed(
    make_unit: MakeUnit, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, _ = make_unit(**{"capture.folder": {"once": True}}, run={"max_attempts": 2})
    feed(Path(config.capture.folder.path), SAMPLE_PHOTOS[:2], ["a-poison.jpg", "b-fine.jpg"])
    real = Engine.load_image

    def poisoned(self: Engine, source: Any) -> np.ndarray:
        if "poison" in str(source):
            raise MemoryError("injected: decoder ran out of memory")
        return real(self, source)

    monkeypatch.setattr(Engine, "load_image", poisoned)
    d = run(config)
    assert d.summary.failed == 1 and sum(d.summary.results.values()) == 1
    rows = ledger(config)
    assert rows["a-poison.jpg"]["status"] == "failed" and "MemoryError" in rows["a-poison.jpg"]["error"]
    assert rows["b-fine.jpg"]["status"] == "done"


def test_a_camera_that_vanishes_is_reopened_with_backoff(make_unit: MakeUnit, face_image: np.ndarray) -> None:
    config, _ = make_unit(run={"frame_queue": 32}, capture={"fps": 0})
    cam = FakeCamera(face_image, ["frame", "frame", "lost", "frame", "end"], open_failures=2)
    d = run(config, source=cam)
    assert cam.open_attempts == 4 and cam.opens == 2  # two failed opens (backoff), open, lost, reopened
    assert d.summary.capture_reopens == 1 and d.summary.frames == 3
    assert d.metrics.total("edgeface_capture_reopens_total") == 1


def test_live_frames_are_dropped_when_inference_is_behind(
    make_unit: MakeUnit, face_image: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, _ = make_unit(run={"frame_queue": 2}, capture={"fps": 0})
    cam = FakeCamera(face_image, ["frame"] * 20)
    release = threading.Event()
    real = Engine.detect

    def slow(self: Engine, image: np.ndarray) -> Any:
        release.wait(30)
        return real(self, image)

    monkeypatch.setattr(Engine, "detect", slow)
    threading.Thread(target=lambda: (cam.exhausted.wait(30), release.set()), daemon=True).start()
    d = run(config, source=cam)
    assert d.summary.dropped > 0  # capture did not wait for inference
    assert d.summary.dropped + d.summary.frames == 20


def test_dedup_folds_consecutive_frames_of_one_person(make_unit: MakeUnit, face_image: np.ndarray) -> None:
    config, _ = make_unit(dedup={"window_s": 10.0}, run={"frame_queue": 32}, capture={"fps": 0})
    cam = FakeCamera(face_image, ["frame"] * 6, dt=0.5)  # 3 s of one person
    d = run(config, source=cam)
    assert d.summary.frames == 6 and d.summary.results == {"match": 1} and d.summary.merged == 5
    assert len(outbox_docs(config)) == 1


def test_trigger_mode_takes_frames_only_when_triggered(make_unit: MakeUnit, face_image: np.ndarray) -> None:
    config, _ = make_unit(capture={"mode": "trigger", "triggers": ["command"], "frames_per_trigger": 2})
    cam = FakeCamera(face_image, [], endless=True)
    d = Daemon(config, source=cam, install_signals=False)
    t = threading.Thread(target=d.run)
    t.start()
    try:
        deadline = time.monotonic() + 60
        assert d.running.wait(60)
        d.on_command({"command": "capture"})  # what the publisher does with an MQTT 'capture' command
        d.on_command({"command": "capture"})
        while d.metrics.total("edgeface_frames_captured_total") < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        assert d.metrics.total("edgeface_frames_captured_total") == 4
    finally:
        d.request_stop()
        t.join(60)
    assert d.summary.frames == 4


def test_retention_keeps_crops_until_acknowledged_then_deletes_them(make_unit: MakeUnit) -> None:
    config, _ = make_unit(**{"capture.folder": {"once": True}}, retention={"save": "crop", "keep_after_ack_s": 0.0})
    feed(Path(config.capture.folder.path), SAMPLE_PHOTOS[:2])
    run(config)
    media = Path(config.retention.dir)
    crops = sorted(media.rglob("*.jpg"))
    ids = [doc["id"] for doc in outbox_docs(config)]
    assert len(crops) == 2 and {c.name.split("-crop")[0] for c in crops} == set(ids)
    assert all(c.stat().st_mode & 0o777 == 0o600 for c in crops)
    with Outbox(config.outbox.path) as box:
        ret = Retention(config, box)
        assert ret.sweep() == 0  # not acknowledged yet: kept
        box.ack(ids[:1])  # what the publisher does on the broker's PUBACK
        assert ret.sweep() == 1 and len(list(media.rglob("*.jpg"))) == 1
        box.ack(ids[1:])
        assert ret.sweep() == 1 and list(media.rglob("*.jpg")) == []
        ret.close()


def test_retention_keeps_nothing_unasked_and_deletes_imported_photos_when_asked(make_unit: MakeUnit) -> None:
    config, _ = make_unit(
        **{"capture.folder": {"once": True, "delete_processed": True}}, retention={"keep_after_ack_s": 3600.0}
    )
    media = Path(config.retention.dir)
    (media / "20250101").mkdir(parents=True)
    (media / "20250101" / "left-over.jpg").write_bytes(b"x")  # nothing in the index asks for it
    photos = feed(Path(config.capture.folder.path), SAMPLE_PHOTOS[:2])
    run(config)
    assert list(media.rglob("*.jpg")) == []  # save = none, and the orphan is gone
    ids = [doc["id"] for doc in outbox_docs(config)]
    with Outbox(config.outbox.path) as box:
        box.ack(ids)
        ret = Retention(config, box)
        assert ret.sweep() == 0 and all(p.exists() for p in photos)  # acknowledged, kept for keep_after_ack_s
        assert ret.sweep(now=time.time() + 3601) == 2 and not any(p.exists() for p in photos)
        ret.close()


def test_a_failed_start_closes_what_was_opened_and_says_why(
    make_unit: MakeUnit, face_image: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        config, _ = make_unit(status={"metrics_port": busy.getsockname()[1]})  # the last part to start fails
        cam = ShutdownRecorder(face_image, [])
        d = Daemon(config, source=cam, install_signals=False)
        with pytest.raises(ConfigError, match="status.metrics_port"):
            d.run()
    finally:
        busy.close()
    assert cam.shut_down  # the source, outbox, retention and gallery were closed again
    assert "daemon.cannot_start" in [r.getMessage() for r in caplog.records]
    assert d.metrics.errors not in logging.getLogger().handlers
    with Outbox(config.outbox.path) as box:
        assert box.pending_count() == 0


class ShutdownRecorder(FakeCamera):
    shut_down = False

    def shutdown(self) -> None:
        self.shut_down = True


def test_status_file_while_running_and_after(make_unit: MakeUnit, face_image: np.ndarray) -> None:
    config, _ = make_unit()
    cam = FakeCamera(face_image, [], endless=True, dt=0.1)
    d = Daemon(config, source=cam, install_signals=False)
    t = threading.Thread(target=d.run)
    t.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            doc = status_mod.gather(config)
            if doc["daemon"] == "running" and doc.get("counters", {}).get("frames_processed", 0) > 0:
                break
            time.sleep(0.1)
        assert doc["daemon"] == "running" and doc["source"]["kind"] == "fake" and doc["gallery"]["version"] == 1
        assert {"frames_per_s", "faces_per_s"} <= set(doc["rates"]) and "last_hour" in doc["errors"]
    finally:
        d.request_stop()
        t.join(60)
    saved = json.loads(status_mod.status_path(config).read_text())
    assert saved["state"] == "stopped" and status_mod.gather(config)["daemon"] == "stopped"


def test_gallery_sync_in_the_background_switches_the_gallery(
    make_unit: MakeUnit, tmp_path: Path, test_gallery: tuple[Path, Path]
) -> None:
    """A newer gallery published while the unit runs is fetched by the sync thread (here on the MQTT
    'sync_gallery' command), verified, installed, and used from the next frame on."""
    import shutil

    from edgeface.gallery import signing
    from edgeface.gallery.publish import publish
    from edgeface.gallery.serve import make_gallery_server
    from edgeface.gallery.store import GalleryStore

    bundle, key = test_gallery
    publish_dir = tmp_path / "publish"
    shutil.copytree(bundle.parent, publish_dir)
    server = make_gallery_server(publish_dir, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config, _ = make_unit(
        gallery={"sync_url": f"http://127.0.0.1:{server.server_port}/", "sync_interval_s": 3600}, capture={"fps": 10}
    )
    stranger = load_image(SAMPLE_PHOTOS[2])  # Eileen Collins: not in gallery version 1
    seen: list[dict[str, Any]] = []
    d = Daemon(config, source=FakeCamera(stranger, [], endless=True), install_signals=False, on_result=seen.append)
    t = threading.Thread(target=d.run)
    t.start()
    try:
        assert wait(lambda: any(r["decision"] == "no_match" for r in seen))
        engine = Engine(config)
        faces = engine.detect_and_assess(stranger)
        vec = engine.embed(engine.align(stranger, faces[0].face))
        g = GalleryStore.from_config(config.gallery, config.models).open()
        assert g is not None
        entries = [g.entry(i) for i in range(len(g))] + [
            {
                "identity": "eileen-collins",
                "image": "ab" * 32,
                "source": "test",
                "consent": "test",
                "enrolled_by": "pytest",
                "enrolled_at": "2025-01-01T00:00:00Z",
            }
        ]
        identities = [g.identity(i) for i in range(g.manifest.identities)] + [
            {"id": "eileen-collins", "name": "Eileen Collins"}
        ]
        publish(
            publish_dir,
            vectors=np.vstack([np.asarray(g.vectors), vec[None]]),
            entries=entries,
            identities=identities,
            embedder=g.manifest.embedder,
            thresholds=g.manifest.thresholds,
            signer=signing.load_private_key(key.with_name("central.pem")),
        )
        g.close()
        d.on_command({"command": "sync_gallery"})  # what the publisher does with the MQTT command
        assert wait(lambda: any(r["identity"] == "eileen-collins" and r["decision"] == "match" for r in seen))
    finally:
        d.request_stop()
        t.join(60)
        server.shutdown()
    assert status_mod.gallery_info(config)["version"] == 2


def wait(condition: Callable[[], bool], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False
