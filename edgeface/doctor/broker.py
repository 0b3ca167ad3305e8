"""The broker: reachable with the unit's configured TLS identity, proven by a CONNACK within the timeout.

The probe connects as the unit itself (the broker takes the client id from the certificate's CN), so it
must not disturb the unit's session: it resumes it (clean start off, the configured session expiry),
subscribes to nothing, acknowledges nothing (a queued command stays queued for the daemon) and
disconnects cleanly (no last will). While the daemon is running and connected, nothing is probed: a
second connection would take its session over; the daemon's own view is reported instead.
"""

from __future__ import annotations

import ssl
import threading
import time
from typing import TYPE_CHECKING, Any

from ..errors import EdgefaceError
from .report import Check
from .unit_state import running_daemon

if TYPE_CHECKING:
    from ..config import Config
    from ..mqtt.link import LinkSettings


def broker_check(config: Config) -> Check:
    m = config.mqtt
    if not m.host:
        return Check("broker", "skip", "no broker configured (mqtt.host): results wait in the outbox")
    daemon = running_daemon(config)
    link = (daemon or {}).get("link") or {}
    if daemon is not None and link.get("connected"):
        return Check(
            "broker",
            "ok",
            f"{link.get('host') or m.host}: connected, held by the running daemon (pid {daemon.get('pid')}); not "
            "probed (a second connection as this unit would take its session over)",
            detail={"link": link, "from": "status.json"},
        )
    from ..mqtt.link import LinkSettings, check_identity, device_id_from

    try:
        device_id = device_id_from(config.device.id)
        settings = LinkSettings.from_config(m, m.client_id or device_id)
        check_identity(device_id, settings)
    except EdgefaceError as e:
        return Check(
            "broker", "fail", f"{m.host}: the configured identity cannot be used: {e}", "fix [mqtt] / device.id"
        )
    return probe(settings, device_id)


def _identity(settings: LinkSettings, device_id: str) -> str:
    if settings.cert_file is not None:
        return f"client certificate CN={device_id}"
    if settings.username:
        return f"user {settings.username}"
    return "no client authentication"


def probe(settings: LinkSettings, device_id: str) -> Check:
    """Connect (TCP, TLS, MQTT) and wait for the CONNACK, then disconnect; at most the connect timeout."""
    from ..mqtt.link import make_client, open_connection

    where = f"{'mqtts' if settings.tls else 'mqtt'}://{settings.host}:{settings.port}"
    who = _identity(settings, device_id)
    detail: dict[str, Any] = {
        "url": where,
        "identity": who,
        "protocol": settings.protocol,
        "tls": settings.tls,
        "timeout_s": settings.connect_timeout_s,
    }
    advice = "check the broker is up and reachable from here (mqtt.host, mqtt.port, firewall)"
    try:
        client = make_client(settings, manual_ack=True)  # acknowledges nothing: queued messages stay queued
    except EdgefaceError as e:
        return Check("broker", "fail", f"{where}: {e}", "check mqtt.ca_file, mqtt.cert_file, mqtt.key_file", detail)
    answer: dict[str, Any] = {}
    done = threading.Event()

    def on_connect(_c: Any, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        answer["reason"] = reason
        answer["session_present"] = bool(getattr(flags, "session_present", False))
        done.set()

    def on_disconnect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        answer.setdefault("dropped", reason)
        done.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    t0 = time.monotonic()
    try:
        open_connection(client, settings)  # TCP + TLS handshake, bounded by the connect timeout
    except ssl.SSLError as e:
        return Check(
            "broker",
            "fail",
            f"{where}: TLS handshake failed ({e.reason or e})",
            "check mqtt.ca_file is the CA that signed the broker's certificate, and that the broker trusts this "
            "unit's certificate",
            detail,
        )
    except (OSError, ValueError) as e:
        return Check("broker", "fail", f"{where}: cannot connect ({e})", advice, detail)
    client.loop_start()
    try:
        left = max(0.1, settings.connect_timeout_s - (time.monotonic() - t0))
        got = done.wait(left)
        ms = (time.monotonic() - t0) * 1000
        reason = answer.get("reason")
        if not got:
            return Check(
                "broker", "fail", f"{where}: no CONNACK within {settings.connect_timeout_s:g} s", advice, detail
            )
        if reason is None or getattr(reason, "is_failure", True):
            why = reason if reason is not None else f"connection closed ({answer.get('dropped')})"
            return Check(
                "broker",
                "fail",
                f"{where}: the broker refused {who}: {why}",
                "the broker's rules must know this device (edgeface broker rules); its certificate's CN must be "
                "device.id",
                detail,
            )
        detail.update(connack_ms=round(ms, 1), session_present=answer.get("session_present"))
        return Check(
            "broker",
            "ok",
            f"{where}: CONNACK in {ms:.0f} ms as {who} ({settings.protocol}"
            f"{', TLS verified' if settings.tls else ', no TLS'})",
            detail=detail,
        )
    finally:
        client.disconnect()
        client.loop_stop()
