"""Gallery management through the web app: enrollment with provenance and refusals, identity removal,
publishing (signed, verifiable, announced), and `edgeface server run` with worker processes."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from edgeface.gallery.bundle import verify_bundle
from edgeface.gallery.signing import generate_keypair, load_public_key
from edgeface.mqtt import payloads, topics
from edgeface.server import audit
from edgeface.server.db import Database
from edgeface.server.ingest import DbResultStore
from edgeface.server.tables import identities, images, publications
from edgeface.testing.broker import free_port
from edgeface.testing.mqttload import sample_result, write_toml

from .conftest import Browser

IMAGES = Path(__file__).resolve().parents[1] / "images"


def _enroll(b: Browser, ident: str, *files: Path, consent: str = "public domain portrait") -> Any:
    data = {
        "identity": ident,
        "name": ident.title(),
        "source": "tests/images (PROVENANCE.md)",
        "consent": consent,
        "images": [(open(f, "rb"), f.name) for f in files],
    }
    return b.post("/gallery/enroll", data, content_type="multipart/form-data")


def test_enroll_publish_and_wipe(config: Any, db: Any, as_admin: Browser, as_reviewer: Browser) -> None:
    generate_keypair(config.server.signing_key, config.server.signing_key.with_suffix(".pub"))
    r = _enroll(as_admin, "obama", IMAGES / "obama.jpg", IMAGES / "obama_partial_face.jpg")
    page = r.get_data(as_text=True)
    assert r.status_code == 200 and "enrolled" in page
    bad = as_admin.post(
        "/gallery/enroll",
        {"identity": "x", "source": "s", "consent": "c", "images": [(open(__file__, "rb"), "notes.jpg")]},
        content_type="multipart/form-data",
    )
    assert "not an image" in bad.get_data(as_text=True)
    assert _enroll(as_admin, "bad id!", IMAGES / "biden.jpg").status_code == 400
    assert _enroll(as_admin, "biden", IMAGES / "biden.jpg", consent="").status_code == 400
    assert _enroll(as_admin, "biden", IMAGES / "biden.jpg").status_code == 200
    with db.read() as conn:
        rows = conn.execute(select(images.c.identity_id, images.c.status, images.c.consent, images.c.enrolled_by)).all()
    assert ("biden", "enrolled", "public domain portrait", "ada") in rows
    r = as_admin.post("/gallery/publish")
    assert r.status_code == 200 and "Published gallery version 1" in r.get_data(as_text=True)
    assert "Not announced" in r.get_data(as_text=True)  # no broker configured here: said, not hidden
    pub = config.server.data_dir / "publish" / config.models.embedder  # one folder per embedder (publishing.py)
    vb = verify_bundle(pub / "v0000000001", [load_public_key(config.server.signing_key.with_suffix(".pub"))])
    assert vb.manifest.identities == 2
    entries = [json.loads(x) for x in (pub / "v0000000001" / "entries.ndjson").read_text().splitlines()]
    assert all(e["consent"] and e["source"] and e["enrolled_by"] == "ada" for e in entries)
    # reviewers see enrolled images only through a result's review page (tests/server/test_review.py),
    # never the gallery's pages or images; administrators open them from the gallery pages
    with db.read() as conn:
        img_id = conn.execute(select(images.c.id).where(images.c.identity_id == "biden")).scalar()
    assert as_reviewer.get(f"/gallery/images/{img_id}").status_code == 403
    assert as_reviewer.get("/gallery").status_code == 403
    thumb = re.search(
        r'src="(/gallery/images/[^"]+)"', as_admin.get("/gallery/identities/biden").get_data(as_text=True)
    )
    assert thumb and as_admin.get(thumb.group(1).replace("&amp;", "&")).status_code == 200
    # remove an identity: needs a reason; its image files go; the next version drops it
    assert as_admin.post("/gallery/identities/biden/wipe").status_code == 400
    assert as_admin.post("/gallery/identities/biden/wipe", {"reason": "enrolled by mistake"}).status_code == 302
    assert as_admin.get(f"/gallery/images/{img_id}").status_code == 404
    as_admin.post("/gallery/publish")
    with db.read() as conn:
        assert [p.version for p in conn.execute(select(publications.c.version))] == [1, 2]
        acts = [e.action for e in audit.entries(conn)]
        assert audit.verify(conn).ok
    assert {"enroll.image", "gallery.publish", "identity.wipe"} <= set(acts)
    m2 = json.loads((pub / "v0000000002" / "manifest.json").read_text())
    assert m2["identities"] == 1


def test_publish_without_enrollments_or_key_is_refused(config: Any, as_admin: Browser) -> None:
    r = as_admin.post("/gallery/publish")
    assert r.status_code == 409 and "keygen" in r.get_data(as_text=True)
    generate_keypair(config.server.signing_key, config.server.signing_key.with_suffix(".pub"))
    r = as_admin.post("/gallery/publish")
    assert r.status_code == 409 and "enroll" in r.get_data(as_text=True)


def test_server_run_with_worker_processes(tmp_path: Path, broker: Any) -> None:
    """`edgeface server run --ingest-workers 2`: the web app, worker 0 in-process, worker 1 a child."""
    port = free_port()
    url = f"sqlite:///{tmp_path / 'server.sqlite3'}"
    cfg = write_toml(
        tmp_path / "server.toml",
        {
            "server": {"database_url": url, "data_dir": str(tmp_path / "data"), "port": port},
            "mqtt": {"host": "127.0.0.1", "port": broker.port, "tls": False},
            "ingest": {"client_id": "ingest-run-test"},
        },
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeface", "--config", str(cfg), "server", "run", "--ingest-workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    lines: list[str] = []  # the server's and its child worker's log, read as it comes
    reader = threading.Thread(
        target=lambda: lines.extend(b.decode(errors="replace") for b in iter(proc.stderr.readline, b"")),  # type: ignore[union-attr]
        daemon=True,
    )
    reader.start()
    try:
        import paho.mqtt.client as mqtt

        db = Database(url)
        db.migrate()  # the server migrates too: both under the write lock
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="run-test-pub", protocol=mqtt.MQTTv5)
        c.connect("127.0.0.1", broker.port)
        c.loop_start()
        rng = random.Random(5)
        store = DbResultStore(db)
        deadline = time.monotonic() + 60
        while store.count() < 150 and time.monotonic() < deadline:  # results before a subscription are dropped
            for _ in range(20):
                c.publish(
                    topics.results_topic("unit-r"), payloads.encode_result(sample_result("unit-r", rng)), qos=1
                ).wait_for_publish(5)
            time.sleep(0.2)
        assert store.count() >= 150
        c.loop_stop()
        import urllib.request

        assert json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read())["ok"]
        db.dispose()
        # worker 0 alone may have stored the 150: wait for the child worker's own start before stopping
        deadline = time.monotonic() + 60
        while not any("ingest-run-test-1" in line for line in list(lines)) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(10)
    log = "".join(lines)
    assert "server.worker.started" in log and "ingest-run-test-1" in log
    # SIGTERM is a graceful stop (server/run.py): workers stopped, exit 0; -15 would mean the signal killed it
    assert proc.returncode == 0, log[-2000:]
    assert "server.stopped" in log


def _retained_announcement(port: int) -> dict[str, Any]:
    import threading

    import paho.mqtt.client as mqtt

    got: dict[str, Any] = {}
    done = threading.Event()

    def on_message(c: Any, u: Any, msg: Any) -> None:
        got.update(json.loads(msg.payload), retained=msg.retain)
        done.set()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="announce-reader", protocol=mqtt.MQTTv5)
    c.on_message = on_message
    c.connect("127.0.0.1", port)
    c.subscribe(topics.GALLERY_ANNOUNCE, qos=1)
    c.loop_start()
    try:
        assert done.wait(30), "no retained announcement on the broker"
    finally:
        c.loop_stop()
        c.disconnect()
    return got


def _publishing_app(tmp_path: Path, broker: Any, public_url: str) -> tuple[Any, Database, Browser]:
    from edgeface.server.app import create_app

    from .conftest import make_user, server_config

    cfg = server_config(
        tmp_path,
        **{"server.public_url": public_url, "mqtt.host": "127.0.0.1", "mqtt.port": broker.port, "mqtt.tls": "false"},
    )
    generate_keypair(cfg.server.signing_key, cfg.server.signing_key.with_suffix(".pub"))
    db = Database(cfg.server.database_url)
    db.migrate()
    make_user(db, "ada", "admin")
    b = Browser(create_app(cfg, db=db, migrate=False))
    b.login("ada")
    # the session cookie goes along to the forged host too, so the forged request is authenticated
    b.client.set_cookie("edgeface_session", b.client.get_cookie("edgeface_session").value, domain="evil.example")
    assert _enroll(b, "obama", IMAGES / "obama.jpg").status_code == 200
    return cfg, db, b


FORGED = {"Host": "evil.example", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "http"}


def test_publish_without_public_url_is_refused(tmp_path: Path, broker: Any) -> None:
    cfg, db, admin = _publishing_app(tmp_path, broker, "")
    r = admin.post("/gallery/publish", headers=FORGED)
    text = r.get_data(as_text=True)
    assert r.status_code == 409 and "server.public_url is not set" in text, text
    with db.read() as conn:
        assert conn.execute(select(publications.c.version)).all() == []
        assert "gallery.publish" not in [e.action for e in audit.entries(conn)]
    assert not list((cfg.server.data_dir / "publish").glob("v*"))  # nothing built either
    db.dispose()


def test_announcement_url_is_built_from_public_url_never_the_host_header(tmp_path: Path, broker: Any) -> None:
    cfg, db, admin = _publishing_app(tmp_path, broker, "https://central.example/edge/")
    r = admin.post("/gallery/publish", headers=FORGED)
    assert r.status_code == 200 and "Announced" in r.get_data(as_text=True), r.get_data(as_text=True)
    doc = _retained_announcement(broker.port)
    assert doc["retained"] and doc["gallery_version"] == 1
    assert doc["url"] == "https://central.example/edge/bundles/" and doc["url"] in r.get_data(as_text=True)
    with db.read() as conn:
        assert audit.entries(conn, action="gallery.publish")[0].details["url"] == doc["url"]
    db.dispose()


def test_server_run_refuses_a_malformed_public_url(tmp_path: Path) -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgeface",
            "--set",
            f"server.database_url=sqlite:///{tmp_path}/s.db",
            "--set",
            "server.public_url=ftp://central.example",
            "server",
            "run",
            "--ingest-workers",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode != 0 and "server.public_url = 'ftp://central.example' is not a base URL" in r.stderr, r.stderr


def bomb_png(side: int = 15000) -> bytes:
    """A real, valid PNG of side x side black pixels (1-bit grey): 225 megapixels that deflate to ~30 KB."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    z = zlib.compressobj(9)
    row = bytes(1 + (side + 7) // 8)  # filter byte 0, then the row's bits, all zero
    idat = b"".join(z.compress(row * 500) for _ in range(side // 500)) + z.compress(row * (side % 500)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "side,why",
    [
        (15000, "bomb.png: far above image.max_pixels = 50000000 (Image size (225000000 pixels)"),  # Pillow refuses
        (8000, "bomb.png: 8000x8000 = 64000000 pixels, above image.max_pixels = 50000000"),  # Pillow would decode
    ],
)
def test_decompression_bomb_refused_and_nothing_stored(
    config: Any, db: Any, as_admin: Browser, side: int, why: str
) -> None:
    import io

    bomb = bomb_png(side)
    assert len(bomb) < 100_000
    data = {
        "identity": "obama",
        "name": "Obama",
        "source": "tests/images (PROVENANCE.md)",
        "consent": "public domain",
        "images": [(open(IMAGES / "obama.jpg", "rb"), "obama.jpg"), (io.BytesIO(bomb), "bomb.png")],
    }
    r = as_admin.post("/gallery/enroll", data, content_type="multipart/form-data")
    text = r.get_data(as_text=True)
    assert r.status_code == 413, (r.status_code, text[-500:])
    assert why in text
    assert "Nothing was stored or enrolled" in text
    images_dir = config.server.data_dir / "images"
    assert not images_dir.exists() or list(images_dir.iterdir()) == []  # the good image is not left behind
    with db.read() as conn:
        assert conn.execute(select(images.c.id)).all() == []
        assert conn.execute(select(identities.c.id)).all() == []
        assert "enroll.image" not in [e.action for e in audit.entries(conn)]
    # the same good image alone is then enrolled as usual
    assert _enroll(as_admin, "obama", IMAGES / "obama.jpg").status_code == 200
    assert len(list(images_dir.iterdir())) == 1


def test_a_non_image_refuses_the_whole_upload(config: Any, db: Any, as_admin: Browser) -> None:
    data = {
        "identity": "biden",
        "source": "s",
        "consent": "c",
        "images": [(open(IMAGES / "biden.jpg", "rb"), "biden.jpg"), (open(__file__, "rb"), "notes.jpg")],
    }
    r = as_admin.post("/gallery/enroll", data, content_type="multipart/form-data")
    assert r.status_code == 422 and "notes.jpg: not an image" in r.get_data(as_text=True)
    assert not (config.server.data_dir / "images").exists() or not list((config.server.data_dir / "images").iterdir())
    with db.read() as conn:
        assert conn.execute(select(images.c.id)).all() == []


def test_a_failure_after_storing_removes_the_new_files(
    config: Any, db: Any, as_admin: Browser, monkeypatch: Any
) -> None:
    """Atomic: when recording fails after the files were written, the files this upload created go."""
    from edgeface.server import gallery_admin

    assert _enroll(as_admin, "obama", IMAGES / "obama.jpg").status_code == 200  # kept: enrolled before
    images_dir = config.server.data_dir / "images"
    before = sorted(p.name for p in images_dir.iterdir())

    def broken(*a: Any, **kw: Any) -> Any:
        raise RuntimeError("database went away")

    monkeypatch.setattr(gallery_admin, "enroll_stored", broken)
    as_admin.app.testing = False  # answer 500 as in production instead of raising into the test
    r = _enroll(as_admin, "obama", IMAGES / "obama.jpg", IMAGES / "obama2.jpg")
    assert r.status_code == 500
    assert sorted(p.name for p in images_dir.iterdir()) == before
