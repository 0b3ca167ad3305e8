"""Issue 15's acceptance for commands, end to end with real parts: the deployment's Mosquitto (TLS, the
dynamic security plugin with the rules edgeface writes), the server's command code, database, reply listener
and web application, and the real daemon as a unit. Lock, unlock, revoke and wipe reach the unit and are
applied; replayed, expired, unsigned, wrongly signed and mis-addressed commands are refused and audited; a
revoked unit can no longer publish or download."""

from __future__ import annotations

import base64
import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from edgeface.config import Config, load_config
from edgeface.daemon import Daemon
from edgeface.gallery import signing
from edgeface.mqtt import dynsec, payloads, signed, topics
from edgeface.mqtt.link import LinkSettings
from edgeface.mqtt.oneshot import publish_once
from edgeface.server import audit, auth, commands
from edgeface.server.app import create_app
from edgeface.server.db import Database
from edgeface.server.tables import device_commands
from edgeface.testing import certs
from edgeface.testing.broker import LocalBroker

UNITS = ("unit-a", "unit-b")
REPO = Path(__file__).resolve().parents[2]


def wait_for(condition: Callable[[], Any], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


class Centre:
    """Broker, server database and configuration, signing key, reply listener."""

    def __init__(self, root: Path) -> None:
        self.pki = certs.write_pki(root / "pki", clients=UNITS, central=("edgeface-server", "edgeface-ingest"))
        rules = dynsec.build(UNITS, servers=("edgeface-server",), ingest=("edgeface-ingest",))
        self.broker = LocalBroker.from_deploy(root / "broker", root / "pki", rules=rules)
        self.broker.start()
        signing.generate_keypair(root / "keys" / "central.pem", root / "keys" / "central.pub")
        self.public_key = root / "keys" / "central.pub"
        self.config = self._config(root)
        self.db = Database(self.config.server.database_url)
        self.db.migrate()
        self.replies = commands.ReplyListener(self.config, self.db)
        self.replies.start()
        assert self.replies.subscribed.wait(30), "the reply listener did not subscribe"

    def _config(self, root: Path) -> Config:
        pairs = {
            "server.database_url": f"sqlite:///{root / 'server.sqlite3'}",
            "server.data_dir": str(root / "data"),
            "server.signing_key": str(root / "keys" / "central.pem"),
            "server.cookie_secure": "false",
            "server.public_url": "https://central.example",
            "mqtt.host": "127.0.0.1",
            "mqtt.port": str(self.broker.ports["central"]),
            "mqtt.ca_file": str(self.pki["ca"]),
            "mqtt.cert_file": str(self.pki["edgeface-server.crt"]),
            "mqtt.key_file": str(self.pki["edgeface-server.key"]),
        }
        return load_config(None, env={}, overrides=[f"{k}={v}" for k, v in pairs.items()])

    def unit_mqtt(self, unit: str) -> dict[str, Any]:
        return {
            "host": "127.0.0.1",
            "port": self.broker.ports["mtls"],
            "ca_file": str(self.pki["ca"]),
            "cert_file": str(self.pki[f"{unit}.crt"]),
            "key_file": str(self.pki[f"{unit}.key"]),
            "reconnect_min_s": 0.1,
            "reconnect_max_s": 0.5,
            "heartbeat_s": 2.0,
        }

    def publish_raw(self, unit: str, doc: dict[str, Any]) -> None:
        """Put a command document on a unit's topic as the server's account (someone replaying or forging)."""
        settings = LinkSettings.from_config(self.config.mqtt, "test-raw-publisher")
        sent = publish_once(settings, topics.commands_topic(unit), payloads.encode(doc, "command"))
        assert sent.ok, sent.why

    def command_row(self, command_id: str) -> Any:
        with self.db.read() as conn:
            return conn.execute(select(device_commands).where(device_commands.c.id == command_id)).first()

    def audited(self, action: str) -> list[audit.Entry]:
        with self.db.read() as conn:
            return audit.entries(conn, action=action, limit=1000)

    def close(self) -> None:
        self.replies.stop()
        self.db.dispose()
        self.broker.kill()


@pytest.fixture
def centre(tmp_path: Path) -> Iterator[Centre]:
    c = Centre(tmp_path / "centre")
    yield c
    c.close()


class RunningUnit:
    def __init__(self, config: Config) -> None:
        self.results: list[dict[str, Any]] = []
        self.daemon = Daemon(config, install_signals=False, on_result=self.results.append)
        self.rc: int | None = None
        self.thread = threading.Thread(target=self._run)
        self.thread.start()
        assert self.daemon.running.wait(120), "the daemon did not start"
        assert wait_for(lambda: self.publisher is not None and self.publisher.stats.connected), "no broker link"

    def _run(self) -> None:
        self.rc = self.daemon.run()

    @property
    def unit(self) -> Any:
        return self.daemon._unit  # the running daemon's collaborators (None once stopped)

    @property
    def publisher(self) -> Any:
        u = self.unit
        return u.publisher.current if u is not None and u.publisher is not None else None

    def stop(self) -> None:
        self.daemon.request_stop()
        self.thread.join(120)


def start_unit(make_unit: Callable[..., tuple[Config, Path]], centre: Centre, unit: str) -> RunningUnit:
    config, _ = make_unit(
        device={"id": unit},
        mqtt={**centre.unit_mqtt(unit), "require_subscriber": False},  # no ingest here: results go nowhere
        commands={"trusted_keys": [str(centre.public_key)]},
        run={"drain_timeout_s": 10.0},
    )
    return RunningUnit(config)


def test_lock_unlock_refusals_and_revoke_reach_a_real_unit(
    centre: Centre, make_unit: Callable[..., tuple[Config, Path]]
) -> None:
    cfg, db = centre.config, centre.db
    with db.write() as conn:
        token = auth.issue_device_token(conn, "unit-a")
    web = create_app(cfg, db=db, migrate=False).test_client()
    basic = {"Authorization": "Basic " + base64.b64encode(f"unit-a:{token}".encode()).decode()}
    assert web.get("/bundles/latest.json", headers=basic).status_code != 401  # the token works (nothing published)
    running = start_unit(make_unit, centre, "unit-a")
    try:
        lock, sent = commands.command(cfg, db, "unit-a", "lock", "ada")
        assert sent.ok, sent.why
        assert wait_for(lambda: centre.command_row(lock["id"]).state == "applied")
        assert running.unit.commands.locked  # and its reply left the outbox while locked
        inbox = Path(running.daemon.config.capture.folder.path)
        shutil.copy(REPO / "tests" / "images" / "obama.jpg", inbox / "obama.jpg")
        time.sleep(1.5)  # the folder is polled every 0.05 s: locked, the photo is not read
        assert running.results == [] and running.daemon.summary.frames == 0
        unlock, _ = commands.command(cfg, db, "unit-a", "unlock", "ada")
        assert wait_for(lambda: centre.command_row(unlock["id"]).state == "applied")
        assert not running.unit.commands.locked
        assert wait_for(lambda: running.results, 60)  # unlocked: the photo is processed
        applied = centre.audited("command.applied")
        assert {(e.details["command_id"], e.actor) for e in applied} == {
            (lock["id"], "unit:unit-a"),
            (unlock["id"], "unit:unit-a"),
        }

        # Refused, each for its own reason, and audited; the unit stays unlocked.
        with db.write() as conn:
            expired = commands.issue(
                conn, cfg, "unit-a", "lock", "ada", now=time.time() - cfg.server.command_ttl_s - 60
            )
            for_b = commands.issue(conn, cfg, "unit-b", "lock", "ada")
        commands.send(cfg, db, expired, "ada")
        centre.publish_raw("unit-a", lock)  # replayed: the same signed bytes again
        unsigned = payloads.command_payload("wipe", expires_at=time.time() + 600)
        unsigned.update(device_id="unit-a", seq=1000)
        centre.publish_raw("unit-a", unsigned)
        forged = signed.sign(
            {**payloads.command_payload("wipe", expires_at=time.time() + 600), "device_id": "unit-a", "seq": 1001},
            Ed25519PrivateKey.generate(),
        )
        centre.publish_raw("unit-a", forged)
        centre.publish_raw("unit-a", for_b)  # mis-addressed: signed for unit-b, delivered to unit-a
        want = {
            lock["id"]: "replay",
            expired["id"]: "expired",
            unsigned["id"]: "unsigned",
            forged["id"]: "bad_signature",
            for_b["id"]: "wrong_target",
        }

        def refusals() -> dict[str, str]:
            return {e.details["command_id"]: e.details["reason"] for e in centre.audited("command.refused")}

        assert wait_for(lambda: refusals() == want), refusals()
        assert centre.command_row(expired["id"]).state == "refused"
        assert centre.command_row(lock["id"]).state == "applied"  # its first outcome stays
        assert not running.unit.commands.locked and running.unit.commands.state.highest_seq == unlock["seq"]

        # Revoked: the unit hears it and locks itself, then the broker cuts it off and downloads are refused.
        done = commands.revoke(cfg, db, "unit-a", "ada")
        assert done.known and done.told.ok and done.cut_off.ok, (done.told.why, done.cut_off.why)
        assert running.unit.commands.locked and running.unit.commands.state.lock_reason == "revoke"
        assert web.get("/bundles/latest.json", headers=basic).status_code == 401
        unit_link = LinkSettings(
            host="127.0.0.1",
            port=centre.broker.ports["mtls"],
            client_id="unit-a",
            ca_file=centre.pki["ca"],
            cert_file=centre.pki["unit-a.crt"],
            key_file=centre.pki["unit-a.key"],
        )
        probe = publish_once(unit_link, topics.results_topic("unit-a"), b"{}", timeout=5)
        assert not probe.ok, "a revoked unit could still publish"
        assert wait_for(lambda: not running.publisher.stats.connected or running.publisher.stats.refused_by_broker)
        assert [e.details["ok"] for e in centre.audited("device.broker_cutoff")] == [True]
        # unit-b, not revoked, still can publish
        other = LinkSettings(
            **{
                **unit_link.__dict__,
                "client_id": "unit-b",
                "cert_file": centre.pki["unit-b.crt"],
                "key_file": centre.pki["unit-b.key"],
            }
        )
        assert publish_once(
            other,
            topics.status_topic("unit-b"),
            payloads.encode(payloads.status_payload(device_id="unit-b", state="offline", reason="shutdown"), "status"),
        ).ok
    finally:
        running.stop()


def test_wipe_reaches_a_real_unit_which_wipes_stops_and_reports_honestly(
    centre: Centre, make_unit: Callable[..., tuple[Config, Path]]
) -> None:
    running = start_unit(make_unit, centre, "unit-b")
    config = running.daemon.config
    outbox = Path(config.outbox.path)
    assert outbox.exists() and Path(config.run.state_dir).exists()
    try:
        wipe, sent = commands.command(centre.config, centre.db, "unit-b", "wipe", "ada")
        assert sent.ok, sent.why
        running.thread.join(120)
        assert not running.thread.is_alive(), "the daemon did not stop after the wipe"
    finally:
        running.stop()
    report = running.daemon.wipe_report
    assert report is not None
    assert running.rc == (0 if report.ok else 1)  # the exit status says whether everything was destroyed
    assert wait_for(lambda: centre.command_row(wipe["id"]).state in ("applied", "failed"))
    row = centre.command_row(wipe["id"])
    assert row.state == ("applied" if report.ok else "failed")
    entry = [e for e in centre.audited(f"command.{row.state}") if e.details["command_id"] == wipe["id"]]
    assert entry and entry[0].details["report"] == json.loads(json.dumps(report.as_dict()))
    assert report.ok, report.not_destroyed
    assert not outbox.exists()
    # Only the lock is left (systemd restarts the unit: it must not come back capturing), nothing personal.
    state = Path(config.run.state_dir)
    assert [p.name for p in state.iterdir()] == ["commands.json"]
    kept = json.loads((state / "commands.json").read_text())
    assert kept["locked"] is True and kept["lock_reason"] == "wipe" and kept["highest_seq"] == wipe["seq"]
    again = Daemon(config, install_signals=False)
    t = threading.Thread(target=again.run)
    t.start()
    try:
        assert again.running.wait(120) and again._unit is not None and again._unit.commands.locked
    finally:
        again.request_stop()
        t.join(120)
