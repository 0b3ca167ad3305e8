"""The fleet page marks a device whose gallery is stale (no signed, unexpired pointer from this server can
vouch for it), and the bundle endpoint re-signs an ageing latest.json when a unit asks for it."""

from __future__ import annotations

import base64
import json
import re
import time
from typing import Any

import numpy as np
from sqlalchemy import update

from edgeface.gallery import signing
from edgeface.gallery.manifest import EmbedderRef
from edgeface.gallery.publish import parse_utc, publish, read_pointer, verify_pointer, write_pointer
from edgeface.mqtt import payloads
from edgeface.server import auth
from edgeface.server.fleet import gallery_stale
from edgeface.server.ingest import DbResultStore
from edgeface.server.tables import devices

HOUR = 3600.0


def _publish(config: Any) -> Any:
    """Version 1 in the server's publish folder, signed with the server's key."""
    keys = config.server.signing_key.parent
    signing.generate_keypair(config.server.signing_key, keys / "signing.pub")
    key = signing.load_private_key(config.server.signing_key)
    rng = np.random.default_rng(0)
    v = rng.normal(size=(40, 128)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    entries = [
        {
            "identity": f"p{i // 2}",
            "image": f"{i:064x}",
            "source": "test",
            "consent": "test",
            "enrolled_by": "pytest",
            "enrolled_at": "2025-01-01T00:00:00Z",
        }
        for i in range(40)
    ]
    idents = [{"id": f"p{i}", "name": f"Person {i}"} for i in range(20)]
    publish(
        config.server.data_dir / "publish",
        vectors=v,
        entries=entries,
        identities=idents,
        embedder=EmbedderRef("e", "ab" * 32, 128),
        thresholds={"cosine": 0.8},
        signer=key,
    )
    return key


def _basic(device: str, token: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{device}:{token}".encode()).decode()}


def _row(html: str, device: str) -> str:
    m = re.search(r"<tr[^>]*><td>" + re.escape(device) + r"</td>.*?</tr>", html, re.S)
    assert m, f"no fleet row for {device}"
    return m.group(0)


def test_fleet_marks_the_device_whose_gallery_is_stale(config: Any, db: Any, app: Any, as_admin: Any) -> None:
    key = _publish(config)
    pub = config.server.data_dir / "publish"
    # the server's pointer is old: signed 2.5 days ago for 3 days (past half its lifetime)
    write_pointer(pub, read_pointer(pub), key, config.gallery.pointer_ttl_s, now=time.time() - 2.5 * 86400)
    with db.write() as conn:
        tokens = {d: auth.issue_device_token(conn, d) for d in ("unit-fresh", "unit-stale", "unit-mirror")}
    store = DbResultStore(db)
    for d in tokens:
        store.set_status(payloads.status_payload(device_id=d, state="online", reason="heartbeat", gallery_version=1))

    # unit-fresh polls now: the endpoint re-signs the ageing pointer, the unit gets a fresh one
    r = app.test_client().get("/bundles/latest.json", headers=_basic("unit-fresh", tokens["unit-fresh"]))
    assert r.status_code == 200
    ptr = verify_pointer(r.data, [key.public_key()], "test")
    assert parse_utc(ptr.expires_at) > time.time() + 2.9 * 86400
    # unit-stale last fetched four days ago (> gallery.pointer_ttl_s): what it verified then has expired
    with db.write() as conn:
        conn.execute(
            update(devices).where(devices.c.device_id == "unit-stale").values(last_fetch_at=time.time() - 4 * 86400)
        )

    html = as_admin.get("/fleet").get_data(as_text=True)
    assert "(stale)" in _row(html, "unit-stale")
    assert "(stale)" not in _row(html, "unit-fresh")
    assert "(stale)" not in _row(html, "unit-mirror")  # never fetched here: cannot be told

    # the server's own pointer expires (nobody polled, the key is gone): every unit that reported a gallery
    write_pointer(pub, read_pointer(pub), key, HOUR, now=time.time() - 2 * HOUR)
    config.server.signing_key.unlink()
    r = app.test_client().get("/bundles/latest.json", headers=_basic("unit-fresh", tokens["unit-fresh"]))
    assert r.status_code == 200 and json.loads(r.data)["expires_at"] == read_pointer(pub).expires_at  # served as is
    html = as_admin.get("/fleet").get_data(as_text=True)
    assert all("(stale)" in _row(html, d) for d in tokens)


def test_gallery_stale_rules() -> None:
    now = 1_000_000.0
    ttl = 3 * 86400
    assert gallery_stale(None, now, now + HOUR, True, ttl, now) is None  # no gallery reported
    assert gallery_stale(3, now, None, False, ttl, now) is None  # nothing published here
    assert gallery_stale(3, now, None, True, ttl, now) is True  # unsigned pointer: units refuse it
    assert gallery_stale(3, now, now - 1, True, ttl, now) is True  # expired pointer
    assert gallery_stale(3, None, now + HOUR, True, ttl, now) is None
    assert gallery_stale(3, now - ttl - 1, now + HOUR, True, ttl, now) is True
    assert gallery_stale(3, now - HOUR, now + HOUR, True, ttl, now) is False
