"""Signed commands to units (wipe, lock, unlock, revoke), their replies, and cutting a unit off at the broker.

* :func:`issue` gives the command the unit's next sequence number (kept in ``device_commands``; a number is
  never used twice for a unit), an expiry (``server.command_ttl_s``), signs it with the gallery signing key
  (``server.signing_key``; units trust its public key already) and audits it, in one transaction.
* :func:`send` publishes it at QoS 1 on the unit's commands topic (not retained: the broker keeps it in the
  unit's persistent session while it is offline) and audits whether the broker took it.
* Units answer on ``edgeface/v1/devices/<id>/replies``; :class:`ReplyListener` (started by ``edgeface server
  run``) records each reply on its command and audits it: applied, or refused/failed with the unit's reason.
  A refusal of a command the server never issued (forged, or replayed by someone else) is audited too.
* :func:`revoke` refuses the unit's gallery downloads (its token), sends it a signed ``revoke`` (it locks
  itself if it hears it) and cuts it off at the broker: the dynamic security plugin disables its account,
  which drops its connection, and takes its role away (:func:`edgeface.mqtt.dynsec.revoke_request`).
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from sqlalchemy import Connection, func, select, update

from ..config import Config
from ..errors import ConfigError, PayloadError
from ..gallery import signing
from ..logs import get_logger
from ..mqtt import dynsec, payloads, signed, timestamps, topics
from ..mqtt.link import Backoff, LinkSettings
from ..mqtt.link import Connection as MqttConnection
from ..mqtt.oneshot import Sent, request
from . import audit, auth
from .db import Database
from .tables import device_commands

log = get_logger(__name__)

COMMANDS = ("wipe", "lock", "unlock", "revoke", "capture", "sync_gallery")
OPEN_STATES = ("issued", "sent", "unsent")  # no reply yet
REPLY_MAX_BYTES = 64 * 1024
SEND_CLIENT_ID = "edgeface-server-commands"
REVOKE_WAIT_S = 5.0  # how long a revoke waits for an online unit's reply before cutting it off


def _one_off_client_id() -> str:
    """A client id of its own for each short connection: two requests at once must not take over each other's
    session (the broker would drop the first connection)."""
    return f"{SEND_CLIENT_ID}-{secrets.token_hex(6)}"


def issue(
    conn: Connection,
    config: Config,
    device_id: str,
    command: str,
    actor: str,
    *,
    args: dict[str, Any] | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """Number, sign, store and audit a command (inside the caller's write transaction); returns the document."""
    topics.check_device_id(device_id, "device id")
    if command not in COMMANDS:
        raise ConfigError(f"unknown unit command {command!r}: expected one of {', '.join(COMMANDS)}")
    key = signing.load_private_key(Path(config.server.signing_key))
    now = time.time() if now is None else now
    expires = now + config.server.command_ttl_s
    last = conn.execute(select(func.max(device_commands.c.seq)).where(device_commands.c.device_id == device_id))
    seq = int(last.scalar() or 0) + 1
    doc = payloads.command_payload(command, args=args, issued_at=now, expires_at=expires)
    doc.update(device_id=device_id, seq=seq)
    doc = signed.sign(doc, key)
    payloads.check(doc, "command")
    conn.execute(
        device_commands.insert().values(
            id=doc["id"],
            device_id=device_id,
            seq=seq,
            command=command,
            issued_by=actor,
            issued_at=now,
            expires_at=expires,
            document=json.dumps(doc, separators=(",", ":")),
            state="issued",
            reason="",
            detail="",
        )
    )
    audit.append(
        conn,
        actor,
        "command.issue",
        device_id,
        {"id": doc["id"], "command": command, "seq": seq, "expires_at": expires},
    )
    return doc


def send(config: Config, db: Database, doc: dict[str, Any], actor: str, *, timeout: float = 10.0) -> Sent:
    """Publish an issued command to its unit; records and audits whether the broker took it."""
    if not config.mqtt.host:
        sent = Sent(False, "no broker configured (mqtt.host)")
    else:
        settings = LinkSettings.from_config(config.mqtt, _one_off_client_id())
        data = payloads.encode(doc, "command")
        sent = request(settings, topics.commands_topic(doc["device_id"]), data, timeout=timeout)
    with db.write() as conn:
        conn.execute(
            update(device_commands)
            .where(device_commands.c.id == doc["id"], device_commands.c.state.in_(("issued", "unsent")))
            .values(state="sent" if sent.ok else "unsent", detail="" if sent.ok else sent.why[:2000])
        )
        audit.append(
            conn,
            actor,
            "command.send",
            doc["device_id"],
            {"id": doc["id"], "command": doc["command"], "sent": sent.ok, "why": sent.why},
        )
    log.info("server.command.sent" if sent.ok else "server.command.unsent", id=doc["id"], why=sent.why)
    return sent


def command(
    config: Config, db: Database, device_id: str, name: str, actor: str, *, args: dict[str, Any] | None = None
) -> tuple[dict[str, Any], Sent]:
    """Issue and send one command (``args``: a capture's ``{"tag": ...}``)."""
    with db.write() as conn:
        doc = issue(conn, config, device_id, name, actor, args=args)
    return doc, send(config, db, doc, actor)


def record_reply(conn: Connection, reply: dict[str, Any], *, now: float | None = None) -> str:
    """Record a unit's reply on its command and audit it; returns the audit action (``command.applied`` ...)."""
    device = reply["device_id"]
    row = conn.execute(
        select(device_commands.c.state, device_commands.c.reply_id).where(
            device_commands.c.id == reply["command_id"], device_commands.c.device_id == device
        )
    ).first()
    if row is not None and row.reply_id == reply["id"]:
        return "duplicate"  # the broker delivered the same reply again
    action = f"command.{reply['outcome']}"
    if row is not None and row.state in OPEN_STATES:
        conn.execute(
            update(device_commands)
            .where(device_commands.c.id == reply["command_id"])
            .values(
                state=reply["outcome"],
                reason=reply.get("reason", ""),
                detail=reply.get("detail", ""),
                replied_at=time.time() if now is None else now,
                reply_id=reply["id"],
            )
        )
    elif row is not None:
        conn.execute(
            update(device_commands).where(device_commands.c.id == reply["command_id"]).values(reply_id=reply["id"])
        )
    details = {
        "command_id": reply["command_id"],
        "command": reply.get("command", ""),
        "seq": reply.get("seq"),
        "reason": reply.get("reason", ""),
        "detail": reply.get("detail", ""),
        "issued_here": row is not None,
        "unit_ts": reply["ts"],
    }
    if "report" in reply:
        details["report"] = reply["report"]
    audit.append(conn, f"unit:{device[:59]}", action, device, details)
    return action


def wait_reply(db: Database, command_id: str, timeout: float) -> str | None:
    """Wait up to ``timeout`` for a unit's reply to a command (recorded by a :class:`ReplyListener`); its state."""
    deadline = time.monotonic() + timeout
    while True:
        with db.read() as conn:
            state = conn.execute(select(device_commands.c.state).where(device_commands.c.id == command_id)).scalar()
        if state not in OPEN_STATES or time.monotonic() >= deadline:
            return None if state in OPEN_STATES else state
        time.sleep(0.1)


def history(conn: Connection, device_id: str, limit: int = 20) -> list[dict[str, Any]]:
    """The unit's latest commands, newest first (for the fleet page)."""
    c = device_commands.c
    rows = conn.execute(
        select(c.id, c.seq, c.command, c.issued_by, c.issued_at, c.state, c.reason, c.detail, c.replied_at)
        .where(c.device_id == device_id)
        .order_by(c.seq.desc())
        .limit(limit)
    )
    return [dict(r._mapping) for r in rows]


# -- revoking ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Revoked:
    """What :func:`revoke` did: gallery downloads refused (always), the unit told, the broker cut-off."""

    known: bool  # the unit was in the devices table (a token to revoke)
    told: Sent
    cut_off: Sent


def cut_off(config: Config, device_id: str, *, timeout: float = 10.0) -> Sent:
    """Disable the unit's broker account and remove its role (dynamic security plugin, as ``edgeface-server``)."""
    if not config.mqtt.host:
        return Sent(False, "no broker configured (mqtt.host)")
    settings = LinkSettings.from_config(config.mqtt, _one_off_client_id())
    data = json.dumps(dynsec.revoke_request(device_id)).encode()
    got = request(settings, dynsec.CONTROL_TOPIC, data, response_topic=dynsec.CONTROL_RESPONSE, timeout=timeout)
    if not got.ok:
        return got
    try:
        answers = json.loads(got.response or b"{}").get("responses", [])
    except ValueError:
        return Sent(False, f"the broker's answer is not JSON: {got.response!r:.200}", got.response)
    errors = [f"{a.get('command')}: {a['error']}" for a in answers if isinstance(a, dict) and a.get("error")]
    if errors or len(answers) != 2:
        return Sent(False, "the broker refused: " + ("; ".join(errors) or f"{len(answers)} answers"), got.response)
    return got


def revoke(config: Config, db: Database, device_id: str, actor: str) -> Revoked:
    """Revoke a unit: no more gallery downloads, a signed ``revoke`` sent, and the broker cut-off; all audited."""
    topics.check_device_id(device_id, "device id")
    with db.write() as conn:
        known = auth.revoke_device(conn, device_id)
        audit.append(conn, actor, "device.revoke", device_id, {"downloads": "refused", "known": known})
        doc = issue(conn, config, device_id, "revoke", actor)
    told = send(config, db, doc, actor)
    if told.ok:  # an online unit answers at once (it locks itself); an offline one never hears it
        wait_reply(db, doc["id"], REVOKE_WAIT_S)
    cut = cut_off(config, device_id)
    with db.write() as conn:
        audit.append(conn, actor, "device.broker_cutoff", device_id, {"ok": cut.ok, "why": cut.why})
    (log.warning if cut.ok else log.error)("server.device.revoked", device_id=device_id, broker=cut.ok, why=cut.why)
    return Revoked(known, told, cut)


# -- replies ------------------------------------------------------------------------------------------


class ReplyListener:
    """Receives units' replies (shared subscription, persistent session) and records them; a reply is
    acknowledged only once its transaction committed, so a crash makes the broker deliver it again."""

    def __init__(self, config: Config, db: Database, *, client_id: str | None = None) -> None:
        self.db = db
        self.settings = LinkSettings.from_config(
            config.mqtt, client_id or f"edgeface-server-replies-{socket.gethostname()}"[:64]
        )
        self.recorded = 0
        self.refused = 0  # malformed or mis-addressed replies (logged, acknowledged)
        self.subscribed = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: MqttConnection | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="edgeface-replies", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        conn = self._conn = MqttConnection(
            self.settings,
            Backoff(0.5, 30.0),
            on_up=self._on_up,
            on_down=lambda why: self.subscribed.clear(),
            on_message=self._on_message,
            manual_ack=True,
            log_prefix="server.replies",
        )
        conn.client.on_subscribe = self._on_subscribe
        try:
            while not self._stop.is_set():
                conn.step(0.1)
        except Exception as e:  # noqa: BLE001 - logged with the traceback; the web application goes on
            log.exception("server.replies.crashed", error=str(e))
        finally:
            conn.close()

    def _on_up(self, client: mqtt.Client, session_present: bool, props: Any) -> None:
        client.subscribe(topics.REPLIES_SHARED, qos=1)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        if any(r.is_failure for r in reasons):
            log.error(
                "server.replies.subscribe_refused",
                reasons=[str(r) for r in reasons],
                hint="the broker rules must let edgeface-server read edgeface/v1/devices/+/replies (dynsec.server_role)",
            )
            return
        self.subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self._record(msg)
        except PayloadError as e:
            self.refused += 1
            log.warning("server.replies.refused", topic=msg.topic[:200], error=str(e)[:300])
        except Exception as e:  # noqa: BLE001 - the database: not acknowledged, delivered again after reconnecting
            log.exception("server.replies.store_failed", error=str(e))
            if self._conn is not None:
                self._conn.lost(f"store failed: {e}")
                client.disconnect()
            return
        client.ack(msg.mid, msg.qos)

    def _record(self, msg: mqtt.MQTTMessage) -> None:
        parsed = topics.parse_device_topic(msg.topic)
        if parsed is None or parsed[1] != "replies":
            raise PayloadError(f"not a replies topic: {msg.topic[:200]}", "topic")
        reply = payloads.decode(msg.payload, "reply", max_bytes=REPLY_MAX_BYTES)
        if reply["device_id"] != parsed[0]:
            raise PayloadError("reply device_id differs from its topic", "device_mismatch")
        timestamps.parse_timestamp(reply["ts"])
        with self.db.write() as conn:
            action = record_reply(conn, reply)
        self.recorded += 1
        log.info("server.replies.recorded", device_id=parsed[0], command_id=reply["command_id"], action=action)


__all__ = [
    "COMMANDS",
    "ReplyListener",
    "Revoked",
    "command",
    "cut_off",
    "history",
    "issue",
    "record_reply",
    "revoke",
    "send",
]
