"""The MQTT sections: the link a unit (or the server) opens (``[mqtt]``) and the central ingest
(``[ingest]``). Assembled into :class:`edgeface.config.Config` by the config package."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..config.fields import setting


@dataclass(frozen=True)
class MqttConfig:
    """The MQTT link: broker, TLS, credentials, and how results are sent (see deploy/mosquitto/)."""

    host: str = setting("", "Broker host name; empty means no broker: results wait in the outbox.")
    port: int = setting(0, "Broker port; 0 means 8883 with TLS, 1883 without.", min=0, max=65535)
    protocol: Literal["mqtt5", "mqtt311"] = setting(
        "mqtt5", "'mqtt5', or 'mqtt311' for old brokers (which cannot report refused publishes, see docs)."
    )
    tls: bool = setting(True, "Use TLS and verify the broker's certificate (turn off only on loopback tests).")
    ca_file: Path | None = setting(
        None, "CA certificate (PEM) that signed the broker's certificate.", unset="the system CAs"
    )
    cert_file: Path | None = setting(
        None,
        "Client certificate (PEM) for mutual TLS; its CN must equal device.id.",
        unset="no client certificate (a user name, or no client authentication)",
    )
    key_file: Path | None = setting(None, "Private key (PEM) of cert_file.", unset="none (set it with cert_file)")
    username: str = setting("", "Broker username when not using client certificates (must equal device.id).")
    password_file: Path | None = setting(
        None, "File holding the broker password (first line; keep it mode 0600).", unset="no password"
    )
    client_id: str = setting("", "MQTT client id; empty means device.id (one persistent session per unit).")
    keepalive_s: int = setting(30, "Keep-alive interval; a dead link is noticed after 1.5 times this.", min=5, max=3600)
    connect_timeout_s: float = setting(10.0, "Give up a connection attempt after this many seconds.", min=1, max=300)
    session_expiry_s: int = setting(
        7 * 86400,
        "MQTT 5 session expiry: the broker keeps the unit's session this long while it is offline.",
        min=0,
        max=4294967295,
    )
    inflight: int = setting(
        100, "Results sent and not yet acknowledged, at most (the in-flight window).", min=1, max=65535
    )
    reconnect_min_s: float = setting(1.0, "First reconnect delay; doubles per failure, with jitter.", min=0.01)
    reconnect_max_s: float = setting(120.0, "Longest reconnect delay.", min=0.01)
    ack_timeout_s: float = setting(
        60.0, "Reconnect (and resend) when a sent result has waited this long for its acknowledgement.", min=1
    )
    heartbeat_s: float = setting(60.0, "Seconds between retained 'online' status heartbeats.", min=1)
    require_subscriber: bool = setting(
        True,
        "Keep a result queued (and retry) when the broker acknowledges it with MQTT 5 reason 'no matching "
        "subscribers': the broker would drop it because no ingest subscription exists.",
    )
    include_crop: bool = setting(
        True,
        "Send the probe's face crop (JPEG, at most 160 px, re-encoded to fit max_crop_bytes) with each result: a "
        "reviewer cannot review without it. It waits in the outbox sealed (protect.encrypt). Off: no images leave.",
    )
    max_crop_bytes: int = setting(16384, "Largest face crop JPEG, bytes.", min=1024, max=65536)
    max_payload_bytes: int = setting(
        131072, "Largest result payload sent or accepted by ingest, bytes.", min=1024, max=268435455
    )


@dataclass(frozen=True)
class IngestConfig:
    """The central ingest: receives results from the broker and stores each result id once."""

    db: Path = setting(Path("/var/lib/edgeface/results.sqlite3"), "SQLite file the results are stored in.")
    group: str = setting("edgeface-ingest", "MQTT 5 shared-subscription group; workers in one group share the load.")
    client_id: str = setting("", "MQTT client id of this worker; empty means ingest-<host name>. Unique per worker.")
    batch: int = setting(200, "Commit and acknowledge at most this many results at once.", min=1, max=10000)
    flush_ms: float = setting(50.0, "Commit and acknowledge at least this often (milliseconds).", min=1, max=10000)
