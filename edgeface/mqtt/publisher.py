"""The device publisher: drains the outbox to the broker at QoS 1, in its own thread.

The pipeline only ever calls :meth:`Outbox.put` (local disk) and :meth:`Publisher.notify`; nothing
it does waits on the network. This thread owns the MQTT connection and runs one loop:

* connect when disconnected, with exponential backoff and jitter, keeping a persistent session
  (MQTT 5 clean start off with a session expiry; MQTT 3.1.1 clean session off);
* keep at most ``inflight`` results sent and unacknowledged (also never more than the broker's
  MQTT 5 Receive Maximum), fetched from the outbox in priority order;
* delete a row from the outbox only when its PUBACK arrived with a success code; a PUBACK with an
  MQTT 5 failure code (e.g. 0x87 not authorised) leaves the row queued and pauses sending, and so
  does 0x10 "no matching subscribers" (the broker would drop the result: no ingest has a
  subscription yet; Mosquitto 2.0 also forgets shared subscriptions across restarts) unless
  ``require_subscriber`` is off;
* on a lost connection, paho resends the unacknowledged messages after reconnecting (same packet
  ids, DUP set); after a process restart the outbox still holds them, so they are sent again. The
  receiver stores each result id once, which makes the at-least-once delivery exactly-once for
  the application;
* publish a retained ``online`` status with queue depth, gallery version, uptime and software
  version every ``heartbeat_s``; the retained last will says ``offline``;
* receive commands and gallery announcements and hand them, validated, to callbacks.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from .. import __version__
from ..config.core import DeviceConfig
from ..errors import OutboxError, PayloadError
from ..logs import get_logger
from ..outbox.store import Outbox
from . import payloads, timestamps, topics
from .link import Backoff, Connection, LinkSettings, check_identity
from .settings import MqttConfig

log = get_logger(__name__)

ACK_FLUSH_ROWS = 200  # delete acknowledged rows in batches of at most this many
ACK_FLUSH_S = 0.02  # ... or at least this often
PURGE_EVERY_S = 5.0  # how often expired rows are looked for (TTL granularity)
IDLE_WAIT_S = 0.05  # network wait when there is nothing to send
MAX_COMMAND_BYTES = 64 * 1024
SEEN_COMMANDS = 256
NO_MATCHING_SUBSCRIBERS = 0x10  # MQTT 5 PUBACK reason: accepted, but nobody subscribed (so dropped)


@dataclass
class PublisherStats:
    """Counters since the publisher started (read them from any thread)."""

    connected: bool = False
    connects: int = 0
    connect_failures: int = 0
    disconnects: int = 0
    published: int = 0
    acked: int = 0
    refused_by_broker: int = 0
    no_subscribers: int = 0
    ack_timeouts: int = 0
    inflight: int = 0
    heartbeats: int = 0
    commands: int = 0
    malformed_messages: int = 0
    handler_errors: int = 0
    connected_since: float | None = None
    last_error: str = ""
    protocol: str = "mqtt5"

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Publisher:
    """Sends the outbox's results to the broker; see the module docstring for the guarantees."""

    def __init__(
        self,
        outbox: Outbox,
        settings: LinkSettings,
        device_id: str,
        *,
        inflight: int = 100,
        heartbeat_s: float = 60.0,
        ack_timeout_s: float = 60.0,
        reconnect_min_s: float = 1.0,
        reconnect_max_s: float = 120.0,
        gallery_version: Callable[[], int | None] = lambda: None,
        model_id: str | None = None,
        on_command: Callable[[dict[str, Any]], None] | None = None,
        on_announce: Callable[[dict[str, Any]], None] | None = None,
        software_version: str = __version__,
        require_subscriber: bool = True,
    ) -> None:
        topics.check_device_id(device_id)
        check_identity(device_id, settings)
        self.outbox = outbox
        self.settings = settings
        self.device_id = device_id
        self.window = inflight
        self.heartbeat_s = heartbeat_s
        self.ack_timeout_s = ack_timeout_s
        self.gallery_version = gallery_version
        self.model_id = model_id
        self.on_command = on_command
        self.on_announce = on_announce
        self.software_version = software_version
        self.require_subscriber = require_subscriber
        self.stats = PublisherStats(protocol=settings.protocol)
        self._backoff = Backoff(reconnect_min_s, reconnect_max_s)
        self._hold_backoff = Backoff(reconnect_min_s, reconnect_max_s)
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: Connection | None = None
        self._broker_window = inflight
        self._inflight: dict[int, tuple[str, float]] = {}  # mid -> (result id, sent at)
        self._inflight_ids: set[str] = set()
        self._acked: list[str] = []  # acknowledged, not yet deleted from the outbox
        self._acked_ids: set[str] = set()
        self._first_ack_at = 0.0
        self._hold_until = 0.0
        self._next_heartbeat = 0.0
        self._next_purge = 0.0
        self._outbox_retry_at = 0.0
        self._seen_commands: OrderedDict[str, None] = OrderedDict()
        self.error: BaseException | None = None

    @classmethod
    def from_config(cls, mqtt: MqttConfig, device: DeviceConfig, outbox: Outbox, **kwargs: Any) -> Publisher:
        """From the ``[mqtt]`` and ``[device]`` config sections; ``kwargs`` go to the constructor (``model_id``,
        ``gallery_version``, the callbacks)."""
        from .link import device_id_from

        device_id = device_id_from(device.id)
        m = mqtt
        settings = LinkSettings.from_config(m, m.client_id or device_id)
        return cls(
            outbox,
            settings,
            device_id,
            inflight=m.inflight,
            heartbeat_s=m.heartbeat_s,
            ack_timeout_s=m.ack_timeout_s,
            reconnect_min_s=m.reconnect_min_s,
            reconnect_max_s=m.reconnect_max_s,
            require_subscriber=m.require_subscriber,
            **kwargs,
        )

    # ----------------------------------------------------------------------------------------------
    # life cycle (any thread)

    def start(self) -> None:
        """Run the loop in a background thread."""
        if self._thread is not None:
            raise RuntimeError("publisher already started")
        self._thread = threading.Thread(target=self._run_guarded, name="edgeface-publisher", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """Tell the publisher new results are in the outbox (optional: it also polls)."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Say goodbye (retained 'offline' status), disconnect and end the thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def idle(self) -> bool:
        """Nothing in flight and nothing acknowledged waiting to be deleted."""
        return not self._inflight and not self._acked

    def wait_drained(self, timeout: float) -> bool:
        """Block until the outbox is empty and nothing is in flight; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.idle() and self.outbox.pending_count() == 0 and self.idle():
                return True
            if self._thread is not None and not self._thread.is_alive():
                return False
            time.sleep(0.02)
        return False

    def run(self) -> None:
        """The loop, in the calling thread, until :meth:`stop` (used by ``edgeface outbox drain``)."""
        try:
            while not self._stop.is_set():
                self._step()
        finally:
            self._shutdown()

    def _run_guarded(self) -> None:
        try:
            self.run()
        except BaseException as e:  # recorded for the supervisor, and logged with the traceback
            self.error = e
            log.exception("publisher.crashed", error=str(e))
            raise

    # ----------------------------------------------------------------------------------------------
    # the loop (publisher thread only)

    def _step(self) -> None:
        conn = self._conn
        if conn is None:
            conn = self._conn = Connection(
                self.settings,
                self._backoff,
                on_up=self._on_up,
                on_down=self._on_down,
                on_publish=self._on_publish,
                on_message=self._on_message,
                will=self._will,
                max_inflight=self.window + 8,
                log_prefix="mqtt",
            )
        busy = conn.connected and (
            (bool(self._acked) and time.monotonic() >= self._outbox_retry_at)
            or (len(self._inflight) < self._effective_window() and self._wake.is_set())
        )
        up = conn.step(0.0 if busy else IDLE_WAIT_S)
        self.stats.connected = up
        self.stats.connect_failures = conn.failures
        self._flush_acks(force=not up)
        if not up:
            return
        now = time.monotonic()
        self._check_ack_timeouts(now)
        self._fill_window(now)
        if now >= self._next_heartbeat:
            self._heartbeat("heartbeat")
        if now >= self._next_purge:
            self._next_purge = now + PURGE_EVERY_S
            self._outbox_call(self.outbox.purge_expired)

    def _will(self) -> tuple[str, bytes]:
        return topics.status_topic(self.device_id), payloads.encode(
            self._status("offline", "connection_lost"), "status"
        )

    # paho callbacks: called from Connection.step() in this thread

    def _on_up(self, client: mqtt.Client, session_present: bool, props: Any) -> None:
        self.stats.connected = True
        self.stats.connects += 1
        self.stats.connected_since = time.time()
        self._broker_window = self.window
        rm = getattr(props, "ReceiveMaximum", None) if props is not None else None
        if rm:
            self._broker_window = min(self.window, int(rm))
        log.info(
            "publisher.online",
            device_id=self.device_id,
            window=self._effective_window(),
            resending=len(self._inflight),
            session_present=session_present,
        )
        client.subscribe(topics.commands_topic(self.device_id), qos=1)
        client.subscribe(topics.GALLERY_ANNOUNCE, qos=1)
        self._heartbeat("connected")
        self._wake.set()

    def _on_down(self, why: str) -> None:
        self.stats.connected = False
        self.stats.disconnects += 1
        self.stats.connected_since = None
        self.stats.last_error = why

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        entry = self._inflight.pop(mid, None)
        if entry is None:
            return  # a status message
        rid, _ = entry
        self._inflight_ids.discard(rid)
        if reason.is_failure or (reason.value == NO_MATCHING_SUBSCRIBERS and self.require_subscriber):
            # The broker did not take the message, or took it with nobody to give it to (it is then
            # gone): keep the row, pause sending, try again later.
            delay = self._hold_backoff.next_delay()
            self._hold_until = time.monotonic() + delay
            if reason.is_failure:
                self.stats.refused_by_broker += 1
                log.error(
                    "mqtt.publish_refused",
                    id=rid,
                    reason=str(reason),
                    retry_in_s=round(delay, 2),
                    hint="the broker refused the result; check that device.id matches the broker identity "
                    "(certificate CN or username) and the ACL",
                )
            else:
                self.stats.no_subscribers += 1
                log.warning(
                    "mqtt.no_subscribers",
                    id=rid,
                    retry_in_s=round(delay, 2),
                    hint="no ingest subscription exists on the broker; the result stays queued",
                )
            return
        self._hold_backoff.reset()
        self.stats.acked += 1
        if not self._acked:
            self._first_ack_at = time.monotonic()
        self._acked.append(rid)
        self._acked_ids.add(rid)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        kind = "announce" if msg.topic == topics.GALLERY_ANNOUNCE else "command"
        try:
            doc = payloads.decode(msg.payload, kind, max_bytes=MAX_COMMAND_BYTES)
        except PayloadError as e:
            self.stats.malformed_messages += 1
            log.warning("mqtt.malformed_message", topic=msg.topic, kind=e.kind, error=str(e)[:300])
            return
        if kind == "command" and "signature" in doc:
            # A signed command: the unit's verifier (edgeface.daemon.commands) checks replay and expiry
            # itself and reports every refusal back, so nothing is dropped silently here.
            self.stats.commands += 1
            log.info("mqtt.command", id=doc["id"], command=doc["command"], signed=True)
            handler = self.on_command
        elif kind == "command":
            if doc["id"] in self._seen_commands:
                return  # redelivered (QoS 1): act once
            self._seen_commands[doc["id"]] = None
            while len(self._seen_commands) > SEEN_COMMANDS:
                self._seen_commands.popitem(last=False)
            if "expires_at" in doc and timestamps.parse_timestamp(doc["expires_at"]) < time.time():
                log.info("mqtt.command_expired", id=doc["id"], command=doc["command"])
                return
            self.stats.commands += 1
            log.info("mqtt.command", id=doc["id"], command=doc["command"])
            if doc["command"] == "send_status":
                self._heartbeat("heartbeat")
            handler = self.on_command
        else:
            log.info("mqtt.gallery_announced", gallery_version=doc["gallery_version"])
            handler = self.on_announce
        if handler is not None:
            try:
                handler(doc)
            except Exception as e:  # a failing handler must not stop results from flowing: count + log
                self.stats.handler_errors += 1
                log.exception("mqtt.handler_failed", kind=kind, error=str(e))

    # sending

    def _effective_window(self) -> int:
        return max(1, min(self.window, self._broker_window))

    def _fill_window(self, now: float) -> None:
        room = self._effective_window() - len(self._inflight)
        if room <= 0 or now < self._hold_until or now < self._outbox_retry_at:
            return
        # Fetch when a quarter of the window is free (or when idle), not for every single ack.
        if room < max(1, self._effective_window() // 4) and self._inflight:
            return
        self._wake.clear()
        exclude = self._inflight_ids | self._acked_ids
        rows = self._outbox_call(self.outbox.fetch, room, exclude)
        if not rows:
            return
        assert self._conn is not None
        for row in rows:
            info = self._conn.client.publish(row.topic, row.payload, qos=1)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                log.warning("mqtt.publish_failed", id=row.id, error=mqtt.error_string(info.rc))
                break
            # NO_CONN: paho queued it and sends it after reconnecting; track it like any other.
            self._inflight[info.mid] = (row.id, now)
            self._inflight_ids.add(row.id)
            self.stats.published += 1
        self.stats.inflight = len(self._inflight)
        self._wake.set()  # there may be more

    def _flush_acks(self, force: bool = False) -> None:
        """Delete acknowledged rows, in batches; ``force`` skips the batching, not the retry delay."""
        now = time.monotonic()
        if not self._acked or now < self._outbox_retry_at:
            return
        if (
            not force
            and self._inflight
            and len(self._acked) < ACK_FLUSH_ROWS
            and now - self._first_ack_at < ACK_FLUSH_S
        ):
            return
        batch = self._acked[:]
        try:
            self.outbox.ack(batch)
        except OutboxError as e:
            # Typically a full disk: the rows stay excluded from sending while the delete is retried.
            self._outbox_retry_at = now + 0.5
            log.warning("outbox.ack_failed", rows=len(batch), error=str(e), retry_in_s=0.5)
            return
        del self._acked[: len(batch)]
        self._acked_ids.difference_update(batch)
        self.stats.inflight = len(self._inflight)

    def _check_ack_timeouts(self, now: float) -> None:
        if not self._inflight:
            return
        oldest = next(iter(self._inflight.values()))[1]  # insertion order is send order
        if now - oldest > self.ack_timeout_s:
            self.stats.ack_timeouts += 1
            assert self._conn is not None
            log.warning(
                "mqtt.ack_timeout",
                waited_s=round(now - oldest, 1),
                inflight=len(self._inflight),
                action="reconnecting to resend",
            )
            for mid, (rid, _) in list(self._inflight.items()):
                self._inflight[mid] = (rid, now)
            self._conn.drop("acknowledgement timeout")  # paho resends unacknowledged messages on reconnect

    def _outbox_call(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except OutboxError as e:
            self._outbox_retry_at = time.monotonic() + 1.0
            log.error("outbox.unavailable", error=str(e), retry_in_s=1.0)
            return None

    # status

    def _status(self, state: str, reason: str) -> dict[str, Any]:
        outbox = None
        if state == "online":
            try:
                outbox = self.outbox.stats().as_dict()
                outbox["matches"] = outbox["by_priority"]["match"]["rows"]
            except OutboxError as e:
                log.warning("outbox.stats_failed", error=str(e))
        link = {"reconnects": max(0, self.stats.connects - 1), "protocol": self.settings.protocol}
        if self.stats.connected_since is not None:
            link["connected_since"] = timestamps.utc_timestamp(self.stats.connected_since)
        try:
            gallery_version = self.gallery_version()
        except Exception as e:  # a failing callback must not stop results from flowing: count + log
            self.stats.handler_errors += 1
            log.exception("status.gallery_version_failed", error=str(e))
            gallery_version = None
        return payloads.status_payload(
            device_id=self.device_id,
            state=state,
            reason=reason,
            uptime_s=time.monotonic() - self._started,
            software_version=self.software_version,
            gallery_version=gallery_version,
            model_id=self.model_id,
            outbox=outbox,
            link=link if state == "online" else None,
        )

    def _heartbeat(self, reason: str) -> None:
        self._next_heartbeat = time.monotonic() + self.heartbeat_s
        if self._conn is None or not self._conn.connected:
            return
        data = payloads.encode(self._status("online", reason), "status")
        self._conn.client.publish(topics.status_topic(self.device_id), data, qos=1, retain=True)
        self.stats.heartbeats += 1

    def _shutdown(self) -> None:
        conn = self._conn
        if conn is not None and conn.connected:
            # Let acknowledgements of what is in flight arrive, then say goodbye.
            deadline = time.monotonic() + 2.0
            while self._inflight and conn.connected and time.monotonic() < deadline:
                conn.step(0.05)
            bye = payloads.encode(self._status("offline", "shutdown"), "status")
            info = conn.client.publish(topics.status_topic(self.device_id), bye, qos=1, retain=True)
            deadline = time.monotonic() + 2.0
            while not info.is_published() and conn.connected and time.monotonic() < deadline:
                conn.step(0.05)
            conn.close()
        self._outbox_retry_at = 0.0
        self._flush_acks(force=True)
        self.stats.connected = False
        log.info(
            "publisher.stopped",
            published=self.stats.published,
            acked=self.stats.acked,
            inflight_left=len(self._inflight),
        )
