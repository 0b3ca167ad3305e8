"""Building a paho-mqtt client from the configuration: protocol, TLS, credentials, session, backoff.

Shared by the device publisher and the central ingest, so both connect the same way and fail with
the same clear messages (a missing certificate file names its config key).
"""

from __future__ import annotations

import random
import re
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ..errors import ConfigError, MqttError
from ..logs import get_logger
from .settings import MqttConfig
from .topics import check_device_id


@dataclass(frozen=True)
class LinkSettings:
    """Everything needed to open one MQTT connection."""

    host: str
    port: int
    client_id: str
    protocol: str = "mqtt5"
    tls: bool = True
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str = ""
    password: str | None = None
    keepalive_s: int = 30
    connect_timeout_s: float = 10.0
    session_expiry_s: int = 7 * 86400

    @classmethod
    def from_config(cls, mqtt: MqttConfig, client_id: str) -> LinkSettings:
        """From the ``[mqtt]`` section; reads the password file and checks the TLS files exist."""
        c = mqtt
        if not c.host:
            raise ConfigError("mqtt.host is empty: set the broker's host name (results wait in the outbox until then)")
        for key in ("ca_file", "cert_file", "key_file", "password_file"):
            path = getattr(c, key)
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"mqtt.{key} = {str(path)!r} does not exist or is not a file")
        if (c.cert_file is None) != (c.key_file is None):
            raise ConfigError("mqtt.cert_file and mqtt.key_file go together: set both for mutual TLS, or neither")
        if c.cert_file is not None and not c.tls:
            raise ConfigError("mqtt.cert_file is set but mqtt.tls = false: client certificates need TLS")
        password = None
        if c.password_file is not None:
            lines = Path(c.password_file).read_text(encoding="utf-8").splitlines()
            password = lines[0] if lines else ""
        return cls(
            host=c.host,
            port=c.port or (8883 if c.tls else 1883),
            client_id=client_id,
            protocol=c.protocol,
            tls=c.tls,
            ca_file=c.ca_file,
            cert_file=c.cert_file,
            key_file=c.key_file,
            username=c.username,
            password=password,
            keepalive_s=c.keepalive_s,
            connect_timeout_s=c.connect_timeout_s,
            session_expiry_s=c.session_expiry_s,
        )


def device_id_from(config_id: str) -> str:
    """The configured device id, or the host name made into a valid id when none is configured."""
    if config_id:
        return check_device_id(config_id)
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()).strip(".-_")[:64] or "edgeface"
    return check_device_id(host, "device.id (from the host name)")


def certificate_cn(path: Path) -> str:
    """The subject common name of a PEM certificate."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    except (OSError, ValueError) as e:
        raise ConfigError(f"mqtt.cert_file = {str(path)!r} is not a readable PEM certificate: {e}") from e
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        raise ConfigError(f"mqtt.cert_file = {str(path)!r} has no subject CN; the broker takes the device id from it")
    return str(names[0].value)


def check_identity(device_id: str, settings: LinkSettings) -> None:
    """Fail closed when the broker would know this unit under another name than its topics use.

    The deploy/ ACL lets a client write only below ``devices/<its identity>/``; an identity that
    differs from ``device.id`` would have every result refused (MQTT 5) or silently dropped by
    the broker (MQTT 3.1.1), so it is refused here, at start-up.
    """
    if settings.cert_file is not None:
        cn = certificate_cn(settings.cert_file)
        if cn != device_id:
            raise ConfigError(
                f"device.id = {device_id!r} but the client certificate's CN is {cn!r}; the broker uses the CN "
                "as the identity. Set device.id to the CN or issue a certificate for this device id."
            )
    elif settings.username and settings.username != device_id:
        raise ConfigError(
            f"device.id = {device_id!r} but mqtt.username = {settings.username!r}; the broker ACL uses the "
            "username as the identity, so they must be equal."
        )


def make_client(
    settings: LinkSettings, *, will: tuple[str, bytes] | None = None, manual_ack: bool = False
) -> mqtt.Client:
    """A configured, not yet connected paho client (callback API version 2)."""
    protocol = mqtt.MQTTv5 if settings.protocol == "mqtt5" else mqtt.MQTTv311
    kwargs: dict[str, Any] = {}
    if protocol == mqtt.MQTTv311:
        kwargs["clean_session"] = False  # persistent session
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=settings.client_id,
        protocol=protocol,
        manual_ack=manual_ack,
        reconnect_on_failure=False,
        **kwargs,
    )
    client.connect_timeout = settings.connect_timeout_s
    if settings.tls:
        try:
            client.tls_set(
                ca_certs=str(settings.ca_file) if settings.ca_file else None,
                certfile=str(settings.cert_file) if settings.cert_file else None,
                keyfile=str(settings.key_file) if settings.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        except (ssl.SSLError, OSError, ValueError) as e:
            raise MqttError(
                f"TLS files cannot be used (mqtt.ca_file, mqtt.cert_file, mqtt.key_file): {e}. Check they "
                "are PEM files and that the key belongs to the certificate."
            ) from e
    if settings.username:
        client.username_pw_set(settings.username, settings.password)
    if will is not None:
        client.will_set(will[0], will[1], qos=1, retain=True)
    return client


def connect_properties(settings: LinkSettings) -> Properties | None:
    """MQTT 5 CONNECT properties: the session outlives the connection by ``session_expiry_s``."""
    if settings.protocol != "mqtt5":
        return None
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho's constructor is unannotated
    props.SessionExpiryInterval = settings.session_expiry_s
    return props


def open_connection(client: mqtt.Client, settings: LinkSettings) -> None:
    """Start connecting (TCP + TLS handshake, blocking up to the connect timeout; CONNACK comes later).

    Raises :class:`OSError` (refused, unreachable, timed out) or :class:`ssl.SSLError` (the broker's
    certificate failed verification, or ours was refused) for the caller's backoff to handle.
    """
    if settings.protocol == "mqtt5":
        client.connect(
            settings.host,
            settings.port,
            settings.keepalive_s,
            clean_start=False,
            properties=connect_properties(settings),
        )
    else:
        client.connect(settings.host, settings.port, settings.keepalive_s)


class Backoff:
    """Exponential backoff with jitter: attempt n waits a random time in [d/2, d], d = min(max, min*2^n).

    The jitter spreads a fleet's reconnects after a broker restart instead of having every unit
    knock at the same instant.
    """

    def __init__(self, min_s: float, max_s: float, rng: random.Random | None = None) -> None:
        if min_s <= 0 or max_s < min_s:
            raise ValueError(f"backoff needs 0 < min_s <= max_s, got {min_s}, {max_s}")
        self.min_s, self.max_s = min_s, max_s
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self.max_s, self.min_s * (2.0 ** min(self.failures, 60)))
        self.failures += 1
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.failures = 0


class Connection:
    """One paho client kept connected: connect, CONNACK timeout, reconnect with :class:`Backoff`.

    Single-threaded: call :meth:`step` repeatedly from the thread that owns it; paho callbacks run
    inside it. ``on_up(client, session_present, connack_properties)`` runs on every successful
    CONNACK, ``on_down(why)`` when an established connection is lost. ``will`` is called before
    each connection attempt, so the last will always carries fresh figures.
    """

    def __init__(
        self,
        settings: LinkSettings,
        backoff: Backoff,
        *,
        on_up: Any,
        on_down: Any,
        on_publish: Any = None,
        on_message: Any = None,
        will: Any = None,
        manual_ack: bool = False,
        max_inflight: int = 20,
        log_prefix: str = "mqtt",
    ) -> None:
        self.settings = settings
        self.backoff = backoff
        self.connected = False
        self.connects = 0
        self.failures = 0
        self.disconnects = 0
        self.last_error = ""
        self._on_up, self._on_down = on_up, on_down
        self._will = will
        self._log = get_logger(f"edgeface.{log_prefix}")
        self._prefix = log_prefix
        self._connecting_since: float | None = None
        self._next_attempt = 0.0
        self.client = make_client(settings, manual_ack=manual_ack)
        self.client.max_inflight_messages_set(max_inflight)
        self.client.max_queued_messages_set(0)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        if on_publish is not None:
            self.client.on_publish = on_publish
        if on_message is not None:
            self.client.on_message = on_message
        self._opened = False

    def step(self, wait: float) -> bool:
        """Do network work for up to ``wait`` seconds; True while connected."""
        if self.connected:
            rc = self.client.loop(timeout=wait)
            if rc != mqtt.MQTT_ERR_SUCCESS and self.connected:
                self.lost(f"network: {mqtt.error_string(rc)}")
            return self.connected
        now = time.monotonic()
        if self._connecting_since is not None:  # TCP/TLS up, waiting for CONNACK
            rc = self.client.loop(timeout=wait)
            if (
                not self.connected
                and self._connecting_since is not None
                and (rc != mqtt.MQTT_ERR_SUCCESS or now - self._connecting_since > self.settings.connect_timeout_s)
            ):
                self._failed(f"no CONNACK: {mqtt.error_string(rc)}")
            return self.connected
        if now < self._next_attempt:
            time.sleep(min(self._next_attempt - now, wait))
            return False
        if self._will is not None:
            topic, payload = self._will()
            self.client.will_set(topic, payload, qos=1, retain=True)
        try:
            if not self._opened:
                self._opened = True
                open_connection(self.client, self.settings)
            else:
                self.client.reconnect()
        except (OSError, ValueError) as e:  # refused, unreachable, timed out, TLS verification failed
            self._failed(f"{type(e).__name__}: {e}")
            return False
        self._connecting_since = time.monotonic()
        return False

    def lost(self, why: str) -> None:
        """Mark an established connection as gone (reconnects after a backoff delay)."""
        if not self.connected:
            return
        self.connected = False
        self.disconnects += 1
        self.last_error = why
        self._connecting_since = None
        delay = self.backoff.next_delay()
        self._next_attempt = time.monotonic() + delay
        self._log.warning(f"{self._prefix}.disconnected", reason=why, retry_in_s=round(delay, 3))
        self._on_down(why)

    def drop(self, why: str) -> None:
        """Abandon the current connection now (e.g. acknowledgements stopped coming); reconnects later."""
        self.client._sock_close()  # paho has no public call for this; reconnect() opens a new socket
        self.lost(why)

    def close(self) -> None:
        """Disconnect cleanly (the broker discards the last will)."""
        if self.connected:
            self.connected = False  # a chosen disconnect is not a lost connection
            self.client.disconnect()
            self.client.loop(timeout=0.1)

    def _failed(self, why: str) -> None:
        self.failures += 1
        self.last_error = why
        self._connecting_since = None
        delay = self.backoff.next_delay()
        self._next_attempt = time.monotonic() + delay
        self._log.warning(
            f"{self._prefix}.connect_failed",
            host=self.settings.host,
            port=self.settings.port,
            error=why,
            retry_in_s=round(delay, 3),
            attempt=self.backoff.failures,
        )

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._connecting_since = None
        if reason.is_failure:
            hint = (
                " (check the client certificate or credentials and the ACL)"
                if reason.value in (0x86, 0x87, 4, 5)
                else ""
            )
            self._failed(f"broker refused the connection: {reason}{hint}")
            return
        self.connected = True
        self.connects += 1
        self.backoff.reset()
        session_present = bool(getattr(flags, "session_present", False))
        self._log.info(
            f"{self._prefix}.connected",
            host=self.settings.host,
            port=self.settings.port,
            client_id=self.settings.client_id,
            session_present=session_present,
        )
        self._on_up(client, session_present, props)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.lost(f"disconnected: {reason}")
