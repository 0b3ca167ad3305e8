"""Fixtures for the store-and-forward tests: real mosquitto brokers on free loopback ports (plain, and
the deploy/ configuration with TLS and the ACL), test certificates, outboxes, ingest workers."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from edgeface.mqtt import Ingest, ResultStore, dynsec
from edgeface.mqtt.link import LinkSettings
from edgeface.outbox import Outbox
from edgeface.testing import certs
from edgeface.testing.broker import LocalBroker
from edgeface.testing.mqttload import outbox_item, sample_result, wait_for

DEVICES = ("unit-a", "unit-b")
SERVER = "edgeface-ingest"  # central identities: certificates from the central CA, the broker's 8885 listener
WEB = "edgeface-server"
CENTRAL = (SERVER, WEB)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """CA, broker certificate (localhost, 127.0.0.1), client certificates for two units, the central CA
    with the ingest's and the server's certificates, plus a certificate for unit-a from a CA the broker
    does not trust and a unit-CA certificate named like the ingest (a CA operator's mistake)."""
    folder = tmp_path_factory.mktemp("pki")
    unit_ca = certs.make_ca()
    paths = certs.write_pki(folder, clients=DEVICES, central=CENTRAL, ca=unit_ca)
    certs.issue(unit_ca, SERVER).write(folder / "unitca-ingest.crt", folder / "unitca-ingest.key")
    paths["unitca-ingest.crt"], paths["unitca-ingest.key"] = folder / "unitca-ingest.crt", folder / "unitca-ingest.key"
    rogue_ca = certs.make_ca("rogue CA")
    certs.issue(rogue_ca, "unit-a").write(folder / "rogue-unit-a.crt", folder / "rogue-unit-a.key")
    (folder / "rogue-ca.crt").write_bytes(rogue_ca.cert.public_bytes(serialization.Encoding.PEM))
    paths["rogue-unit-a.crt"], paths["rogue-unit-a.key"] = folder / "rogue-unit-a.crt", folder / "rogue-unit-a.key"
    paths["rogue-ca"] = folder / "rogue-ca.crt"
    return paths


@pytest.fixture
def tls_broker(tmp_path: Path, pki: dict[str, Path]) -> Iterator[LocalBroker]:
    """deploy/mosquitto/mosquitto.conf with the rules edgeface writes for it, run for real on free ports."""
    rules = dynsec.build(DEVICES, passwords={"unit-p": "correct horse"}, servers=(WEB,), ingest=(SERVER,))
    b = LocalBroker.from_deploy(tmp_path / "tls-broker", pki["ca"].parent, rules=rules)
    b.start()
    yield b
    b.kill()


def plain_settings(port: int, client_id: str, **kw: Any) -> LinkSettings:
    return LinkSettings(host="127.0.0.1", port=port, client_id=client_id, tls=False, **kw)


def mtls_settings(broker: LocalBroker, pki: dict[str, Path], identity: str, **kw: Any) -> LinkSettings:
    """A unit on the 8883 listener, or a central account on the 8885 listener."""
    port = broker.ports["central" if identity in CENTRAL else "mtls"]
    return LinkSettings(
        host="127.0.0.1",
        port=port,
        client_id=kw.pop("client_id", identity),
        ca_file=pki["ca"],
        cert_file=pki[f"{identity}.crt"],
        key_file=pki[f"{identity}.key"],
        **kw,
    )


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "outbox.sqlite3")
    yield box
    box.close()


@pytest.fixture
def rng() -> random.Random:
    return random.Random(1234)


def fill(box: Outbox, device_id: str, n: int, rng: random.Random, **kw: Any) -> list[str]:
    """Store ``n`` sample results; returns their ids in order."""
    items = [outbox_item(sample_result(device_id, rng, **kw)) for _ in range(n)]
    box.put_many(items)
    return [i[0] for i in items]


class IngestRunner:
    """An Ingest worker in a thread, with its store; stopped at the end of the test."""

    def __init__(self, store: ResultStore, worker: Ingest) -> None:
        self.store, self.worker = store, worker

    def wait_count(self, n: int, timeout: float = 30) -> bool:
        return wait_for(lambda: self.store.count() >= n, timeout)

    def wait_connected(self, timeout: float = 20) -> bool:
        return wait_for(lambda: self.worker.stats.connected and self.worker.stats.subscribed, timeout)


@pytest.fixture
def start_ingest(tmp_path: Path) -> Iterator[Any]:
    runners: list[IngestRunner] = []

    def start(settings: LinkSettings, *, db: Path | None = None, **kw: Any) -> IngestRunner:
        store = ResultStore(db or tmp_path / f"ingest-{len(runners)}.sqlite3")
        worker = Ingest(store, settings, reconnect_min_s=0.05, reconnect_max_s=0.5, **kw)
        worker.start()
        runner = IngestRunner(store, worker)
        runners.append(runner)
        assert runner.wait_connected(), "the ingest did not connect"
        return runner

    yield start
    for r in runners:
        r.worker.stop()
        r.store.close()
