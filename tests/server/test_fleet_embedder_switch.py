"""Changing the embedder of a deployed fleet, end to end with real parts: the central server re-embeds the
enrolled images and publishes a signed bundle per model (server.embedders); the publish folder is served
over real HTTP; a unit (the real daemon, real models, encrypted gallery) runs model A with A's gallery,
is told to run model B, keeps answering with A while B's gallery is missing or the server unreachable,
fetches and verifies B's gallery, stops for the switch, and starts again on B with B's gallery (one
swap). The two dlib cards are different files, so the unit treats them as different models."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from edgeface.config import Config, load_config
from edgeface.daemon import Daemon
from edgeface.gallery import switch
from edgeface.gallery.serve import make_gallery_server
from edgeface.gallery.signing import generate_keypair
from edgeface.gallery.store import GalleryStore
from edgeface.gallery.sync import sync_once
from edgeface.outbox import Outbox
from edgeface.server import audit
from edgeface.server.app import create_app
from edgeface.server.db import Database
from edgeface.server.tables import publication_bundles
from edgeface.testing.broker import free_port
from edgeface.vision.cards import find_card

from .conftest import Browser, make_user, server_config

IMAGES = Path(__file__).resolve().parents[1] / "images"
A, B = "dlib-resnet-v1-int8", "dlib-resnet-v1-float32"
ENROLL = {"obama": ["obama.jpg", "obama3.jpg"], "biden": ["biden.jpg"]}
PROBE = IMAGES / "obama2.jpg"  # not enrolled: another photo of an enrolled person


def _server(tmp: Path, db: Database | None, embedders: list[str]) -> tuple[Config, Database, Browser]:
    cfg = server_config(tmp, **{"server.embedders": json.dumps(embedders)})
    if db is None:
        generate_keypair(cfg.server.signing_key, cfg.server.signing_key.with_suffix(".pub"))
        db = Database(cfg.server.database_url)
        db.migrate()
        make_user(db, "ada", "admin")
    b = Browser(create_app(cfg, db=db, migrate=False))
    assert b.login("ada").status_code == 302
    return cfg, db, b


def _publish(b: Browser) -> str:
    r = b.post("/gallery/publish")
    text = r.get_data(as_text=True)
    assert r.status_code == 200, text[-800:]
    return text


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    pub = tmp_path / "server" / "data" / "publish"
    pub.mkdir(parents=True)
    srv = make_gallery_server(pub, port=0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield pub, f"http://127.0.0.1:{srv.server_port}/"
    srv.shutdown()
    srv.server_close()


def _unit(tmp: Path, server_cfg: Config, embedder: str, sync_url: str) -> Config:
    root = tmp / "unit"
    (root / "inbox").mkdir(parents=True, exist_ok=True)
    key = root / "device.key"
    if not key.exists():
        fd = os.open(key, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
    sets = {
        "device.id": "unit-switch",
        "models.embedder": embedder,
        "capture.source": "folder",
        "capture.folder.path": root / "inbox",
        "capture.folder.settle_s": 0.0,
        "capture.folder.poll_s": 0.05,
        "gallery.dir": root / "gallery",
        "gallery.trusted_keys": json.dumps([str(server_cfg.server.signing_key.with_suffix(".pub"))]),
        "gallery.key_file": key,
        "gallery.sync_url": sync_url,
        "gallery.sync_timeout_s": 5.0,
        "outbox.path": root / "outbox.sqlite3",
        "run.state_dir": root / "state",
        "retention.dir": root / "media",
        "status.metrics_port": 0,
        "dedup.window_s": 0.0,
    }
    return load_config(None, env={}, overrides=[f"{k}={v}" for k, v in sets.items()])


def _run(config: Config, photo: Path, *, until_switch: bool = False) -> tuple[Daemon, list[dict[str, Any]]]:
    """The daemon on one photo: until the photo's result is stored (and stopped then), or until it stops
    by itself for an embedder switch. Returns it and the results it queued (outbox payloads)."""
    inbox = Path(config.capture.folder.path)
    shutil.copy(photo, inbox / f"{len(list(inbox.iterdir()))}-{photo.name}")
    before = _results(config)
    seen: list[dict[str, Any]] = []
    d = Daemon(config, install_signals=False, on_result=seen.append)
    t = threading.Thread(target=d.run)
    t.start()
    try:
        deadline = threading.Event()
        for _ in range(1200):
            if (seen and not until_switch) or not t.is_alive():
                break
            deadline.wait(0.1)
    finally:
        if not until_switch:
            d.request_stop()
        t.join(120)
    assert not t.is_alive()
    new = [r for r in _results(config) if r["id"] not in {x["id"] for x in before}]
    return d, new


def _results(config: Config) -> list[dict[str, Any]]:
    box = Outbox.for_unit(config)
    try:
        return [json.loads(p.payload) for p in box.fetch(1000)]
    finally:
        box.close()


def _answered(results: list[dict[str, Any]], model: str, version: int) -> None:
    assert results, "no result stored"
    for r in results:
        assert (r["model_id"], r["gallery_version"]) == (model, version), r
        assert r["candidates"] and r["candidates"][0]["identity_id"] == "obama", r["candidates"]


def _identities(bundle: Path) -> set[str]:
    return {json.loads(x)["id"] for x in (bundle / "identities.ndjson").read_text().splitlines()}


def test_fleet_changes_its_embedder(tmp_path: Path, served: tuple[Path, str]) -> None:
    pub, url = served
    scfg, db, admin = _server(tmp_path / "server", None, [A])
    for ident, files in ENROLL.items():
        data = {
            "identity": ident,
            "name": ident.title(),
            "source": "tests/images (PROVENANCE.md)",
            "consent": "public domain portrait",
            "images": [(open(IMAGES / f, "rb"), f) for f in files],
        }
        assert admin.post("/gallery/enroll", data, content_type="multipart/form-data").status_code == 200
    _publish(admin)  # version 1, for A only
    assert (pub / A / "v0000000001").is_dir() and not (pub / B).exists()
    assert json.loads((pub / "latest.json").read_text())["bundle"] == f"{A}/v0000000001/"

    # a unit on A syncs A's gallery and answers with A
    unit_a = _unit(tmp_path, scfg, A, url)
    store = GalleryStore.from_config(unit_a.gallery, unit_a.models)
    r = sync_once(store, url, embedder_id=A)
    assert (r.status, r.installed) == ("updated", 1)
    assert store.installed_manifest().embedder.id == A  # type: ignore[union-attr]
    _, results = _run(unit_a, PROBE)
    _answered(results, A, 1)

    # the unit is told to run B; the server does not publish for B yet: the unit keeps A and its gallery
    unit_b = _unit(tmp_path, scfg, B, url)
    pair = switch.choose(unit_b)
    assert (pair.active.id, pair.desired.id, pair.switching) == (A, B, True)
    _, results = _run(unit_b, PROBE)
    _answered(results, A, 1)
    pending = switch.pending_store(unit_b, pair)
    r = sync_once(pending, url, embedder_id=B)
    assert (r.status, r.reason) == ("refused", "embedder_mismatch") and f"embedder {B}" in r.message
    info = switch.switch_info(unit_b)
    assert info["running"] == A and info["desired"] == B and info["pending"] and not info["ready"]

    # the server adds B: every enrolled image re-embedded with B, A's embeddings from the cache
    scfg, _, admin = _server(tmp_path / "server", db, [A, B])
    page = _publish(admin)
    assert B in page
    with db.read() as conn:
        rows = {b.embedder_id: b for b in conn.execute(select(publication_bundles))}
        details = {e.subject: e.details for e in audit.entries(conn, action="gallery.publish.embedder")}
    assert rows[A].embedded == 0 and rows[B].embedded == 3 and rows[A].version == rows[B].version == 2
    assert details[f"v2/{B}"]["embedder_sha256"] == find_card(B).sha256 and f"v2/{A}" in details
    assert _identities(pub / A / "v0000000002") == _identities(pub / B / "v0000000002") == set(ENROLL)
    _publish(admin)  # republishing embeds nothing again
    with db.read() as conn:
        assert {
            b.embedded for b in conn.execute(select(publication_bundles).where(publication_bundles.c.version == 3))
        } == {0}

    # offline (the server unreachable): the unit keeps answering with A and its gallery, and says so
    offline = _unit(tmp_path, scfg, B, f"http://127.0.0.1:{free_port()}/")
    d, results = _run(offline, PROBE)
    _answered(results, A, 1)
    assert d.stop_reason != "embedder switch"
    assert switch.choose(offline).active.id == A and not switch.switch_info(offline)["ready"]

    # online: A's newer gallery and B's gallery arrive; A answers until B's is verified, then the daemon
    # stops for the switch by itself
    d, results = _run(unit_b, PROBE, until_switch=True)
    assert d.stop_reason == "embedder switch"
    assert all(r["model_id"] == A for r in results)
    assert switch.switch_info(unit_b)["ready"]
    assert GalleryStore.from_config(unit_a.gallery, unit_a.models).installed_manifest().embedder.id == A  # type: ignore[union-attr]

    # the next start swaps both at once: B's model with B's gallery, the same identities
    _, results = _run(unit_b, PROBE)
    _answered(results, B, 3)
    pair = switch.choose(unit_b)
    assert (pair.active.id, pair.switching) == (B, False) and pair.installed.gallery_version == 3  # type: ignore[union-attr]
    g = GalleryStore.from_config(unit_b.gallery, unit_b.models).open()
    assert g is not None and {g.identity(i)["id"] for i in range(g.manifest.identities)} == set(ENROLL)
    g.close()
    assert not list((Path(unit_b.gallery.dir) / "versions").iterdir())  # A's gallery is gone

    # a bundle for the wrong embedder is still refused: A's folder offered to a store for B
    wrong = GalleryStore(
        tmp_path / "wrong",
        trusted=store.trusted,
        embedder_sha256=find_card(B).sha256,
    )
    r = sync_once(wrong, url + f"{A}/")
    assert (r.status, r.reason, r.installed) == ("refused", "embedder_mismatch", 0)
    db.dispose()
