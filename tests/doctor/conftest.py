"""Fixtures for the doctor's tests: a real TLS mosquitto (the deploy/ configuration and rules) with the unit's
certificates, a real signed gallery for the unit's embedder served over HTTP, and a unit configuration file."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from doctor_helpers import PASSWORD, PASSWORD_UNIT, UNIT, Doctor, write_config

from edgeface.cli import cli
from edgeface.evaluation.distractors import sample, toy_model
from edgeface.gallery.publish import publish_for
from edgeface.gallery.serve import make_gallery_server
from edgeface.mqtt import dynsec
from edgeface.testing import certs
from edgeface.testing.broker import LocalBroker
from edgeface.vision.cards import find_card


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return certs.write_pki(tmp_path_factory.mktemp("pki"), clients=(UNIT,))


@pytest.fixture
def tls_broker(tmp_path: Path, pki: dict[str, Path]) -> Iterator[LocalBroker]:
    """deploy/mosquitto/mosquitto.conf with the rules edgeface writes, on free loopback ports."""
    b = LocalBroker.from_deploy(
        tmp_path / "broker",
        pki["ca"].parent,
        rules=dynsec.build([UNIT], passwords={PASSWORD_UNIT: PASSWORD}, servers=(), ingest=()),
    )
    b.start()
    yield b
    b.kill()


@pytest.fixture(scope="session")
def published(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A gallery signed by a central key for the default embedder (mobilefacenet-v1-int8), its public key,
    and an HTTP server for the publish folder (what `edgeface gallery serve` serves)."""
    root = tmp_path_factory.mktemp("central")
    signer = Ed25519PrivateKey.generate()
    pub = root / "central.pub"
    pub.write_bytes(signer.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    vectors, labels = sample(toy_model(), 40, (1, 2), seed=3)
    entries = [
        {
            "identity": f"p{int(p)}",
            "image": f"{i:064x}",
            "source": "synthetic",
            "consent": "test",
            "enrolled_by": "pytest",
            "enrolled_at": "2026-01-01T00:00:00Z",
        }
        for i, p in enumerate(labels)
    ]
    identities = [{"id": f"p{p}", "name": f"Person {p}"} for p in range(40)]
    card = find_card("mobilefacenet-v1-int8")
    publish_dir = root / "publish"
    publish_for(
        publish_dir,
        card,
        vectors=vectors,
        entries=entries,
        identities=identities,
        signer=signer,
        target_fpir=0.01,
    )
    srv = make_gallery_server(publish_dir, port=0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield {"pub": pub, "url": f"http://127.0.0.1:{srv.server_port}/", "dir": publish_dir}
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def unit(tmp_path: Path, published: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A unit's configuration: its state under tmp_path, the central key trusted, an encrypted gallery, no
    broker yet (tests add [mqtt]); the folder source's inbox exists."""
    state = tmp_path / "unit"
    (state / "inbox").mkdir(parents=True)
    key = state / "device.key"
    from edgeface.gallery.crypto import generate_key_file

    generate_key_file(key)
    return {
        "device": {"id": UNIT},
        "run": {"state_dir": state / "run"},
        "outbox": {"path": state / "outbox.sqlite3"},
        "retention": {"dir": state / "media"},
        "gallery": {
            "dir": state / "gallery",
            "trusted_keys": [str(published["pub"])],
            "key_file": key,
            "sync_url": published["url"],
        },
        "capture": {"source": "folder"},
        "capture.folder": {"path": state / "inbox"},
        "doctor": {"inference_runs": 2, "disk_warn_free_mb": 0, "disk_fail_free_mb": 0},
    }


@pytest.fixture
def doctor(tmp_path: Path) -> Doctor:
    """Run `edgeface --config FILE doctor --json [args]` on a configuration; (exit status, {name: check})."""

    def run(sections: dict[str, dict[str, Any]], *args: str) -> tuple[int, dict[str, Any]]:
        cfg = write_config(tmp_path / "edgeface.toml", sections)
        r = CliRunner().invoke(cli, ["--config", str(cfg), "doctor", "--json", *args])
        assert r.exception is None or isinstance(r.exception, SystemExit), r.output
        doc = json.loads(r.stdout)
        assert doc["exit"] == r.exit_code
        return r.exit_code, {c["name"]: c for c in doc["checks"]}

    return run
