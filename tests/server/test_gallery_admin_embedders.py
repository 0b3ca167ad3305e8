"""Publishing for several embedders: server.embedders is checked against the cards; a publish folder of
the single-embedder layout is moved into its model's folder and the units that synced it keep syncing
from the root pointer; every model's pointer is served no-cache and kept fresh on a poll."""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeface.errors import ConfigError
from edgeface.gallery.crypto import DeviceKey
from edgeface.gallery.publish import publish_for, read_pointer, verify_pointer, write_pointer
from edgeface.gallery.serve import make_gallery_server
from edgeface.gallery.signing import generate_keypair, load_private_key
from edgeface.gallery.store import GalleryStore
from edgeface.gallery.sync import sync_once
from edgeface.server import auth
from edgeface.server.app import create_app
from edgeface.server.embedders import fleet_cards
from edgeface.vision.cards import find_card

from .conftest import Browser, make_user, server_config

IMAGES = Path(__file__).resolve().parents[1] / "images"
A, B = "dlib-resnet-v1-int8", "dlib-resnet-v1-float32"


def test_server_embedders_are_checked_against_the_cards(tmp_path: Path) -> None:
    default = server_config(tmp_path)
    assert [c.id for c in fleet_cards(default)] == [default.models.embedder]  # empty: models.embedder
    assert [c.id for c in fleet_cards(server_config(tmp_path, **{"server.embedders": f'["{B}", "{A}"]'}))] == [B, A]
    with pytest.raises(ConfigError, match=r"server.embedders: no model card .*dlib-resnet-v1-float32"):
        fleet_cards(server_config(tmp_path, **{"server.embedders": '["arcface-r100"]'}))
    with pytest.raises(ConfigError, match="is a detector"):
        fleet_cards(server_config(tmp_path, **{"server.embedders": '["blazeface-short-range"]'}))
    with pytest.raises(ConfigError, match="more than once"):
        fleet_cards(server_config(tmp_path, **{"server.embedders": f'["{A}", "{A}"]'}))


def _legacy_publication(cfg: Any) -> None:
    """What a server of the single-embedder layout left: bundles of model A at the publish folder's root."""
    engine_card = find_card(A)
    rng = np.random.default_rng(3)
    v = rng.normal(size=(20, 128)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    entries = [
        {
            "identity": f"p{i}",
            "image": f"{i:064x}",
            "source": "test",
            "consent": "test",
            "enrolled_by": "pytest",
            "enrolled_at": "2025-01-01T00:00:00Z",
        }
        for i in range(20)
    ]
    publish_for(
        cfg.server.data_dir / "publish",
        engine_card,
        vectors=v,
        entries=entries,
        identities=[{"id": f"p{i}", "name": f"P {i}"} for i in range(20)],
        signer=load_private_key(cfg.server.signing_key),
        target_fpir=0.01,
    )


def test_single_embedder_layout_is_moved_and_old_units_keep_syncing(tmp_path: Path, db: Any) -> None:
    cfg = server_config(tmp_path, **{"server.embedders": f'["{A}", "{B}"]'})
    generate_keypair(cfg.server.signing_key, cfg.server.signing_key.with_suffix(".pub"))
    pub = cfg.server.data_dir / "publish"
    _legacy_publication(cfg)
    assert (pub / "v0000000001").is_dir()
    srv = make_gallery_server(pub, port=0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_port}/"
    trusted = [load_private_key(cfg.server.signing_key).public_key()]
    # a unit of an older release: no embedder folder known, it reads the root pointer
    old_unit = GalleryStore(
        tmp_path / "old-unit", trusted=trusted, key=DeviceKey(bytes(32), "test"), embedder_sha256=find_card(A).sha256
    )
    assert sync_once(old_unit, url).installed == 1

    make_user(db, "ada", "admin")
    admin = Browser(create_app(cfg, db=db, migrate=False))
    admin.login("ada")
    data = {
        "identity": "obama",
        "name": "Obama",
        "source": "tests/images (PROVENANCE.md)",
        "consent": "public domain portrait",
        "images": [(open(IMAGES / "obama.jpg", "rb"), "obama.jpg")],
    }
    assert admin.post("/gallery/enroll", data, content_type="multipart/form-data").status_code == 200
    r = admin.post("/gallery/publish")
    assert r.status_code == 200, r.get_data(as_text=True)[-500:]
    assert not (pub / "v0000000001").exists() and (pub / A / "v0000000001").is_dir()  # moved, kept for deltas
    root_ptr, a_ptr, b_ptr = read_pointer(pub), read_pointer(pub / A), read_pointer(pub / B)
    assert root_ptr and a_ptr and b_ptr
    assert (root_ptr.version, a_ptr.version, b_ptr.version) == (2, 2, 2)  # one version, every model
    assert root_ptr.bundle == f"{A}/v0000000002/"
    r2 = sync_once(old_unit, url)  # the old unit follows the root pointer into A's folder
    assert (r2.status, r2.installed) == ("updated", 2)
    srv.shutdown()
    srv.server_close()

    # the bundle endpoint serves an embedder's pointer no-cache, and re-signs it when it is ageing
    key = load_private_key(cfg.server.signing_key)
    write_pointer(pub / B, b_ptr, key, cfg.gallery.pointer_ttl_s, now=time.time() - 2.5 * 86400)
    with db.write() as conn:
        token = auth.issue_device_token(conn, "unit-b")
    basic = {"Authorization": "Basic " + base64.b64encode(f"unit-b:{token}".encode()).decode()}
    got = admin.app.test_client().get(f"/bundles/{B}/latest.json", headers=basic)
    assert got.status_code == 200 and got.headers["Cache-Control"] == "no-cache"
    fresh = verify_pointer(got.data, trusted, "test")
    assert fresh.version == 2 and fresh.expires_ts and fresh.expires_ts > time.time() + 2.9 * 86400
    assert json.loads((pub / B / "latest.json").read_text())["expires_at"] == fresh.expires_at
