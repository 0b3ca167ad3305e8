"""The retained MQTT gallery announcement (``edgeface/v1/gallery/announce``, announce.v1.json).

Only a hint for units to sync now; they trust what verifies, never the announcement. Published with
the server's own broker account (``edgeface-server`` in the broker rules, edgeface/mqtt/dynsec.py) over a short-lived
clean-start connection, QoS 1, retained; MQTT 5 tells us if the ACL refused it.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

from ..config import Config
from ..logs import get_logger
from ..mqtt import payloads, topics
from ..mqtt.link import LinkSettings, make_client

log = get_logger(__name__)

ANNOUNCE_CLIENT_ID = "edgeface-server-announce"


def announce(config: Config, doc: dict[str, Any], *, timeout: float = 10.0) -> tuple[bool, str]:
    """Publish the announcement; returns (done, why not). Never raises for a network problem."""
    if not config.mqtt.host:
        return False, "no broker configured (mqtt.host)"
    data = payloads.encode(doc, "announce")
    settings = replace(LinkSettings.from_config(config.mqtt, ANNOUNCE_CLIENT_ID), session_expiry_s=0)
    client = make_client(settings)
    connected, published = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def on_connect(c: Any, u: Any, flags: Any, reason: Any, props: Any) -> None:
        outcome["connect"] = reason
        connected.set()

    def on_publish(c: Any, u: Any, mid: int, reason: Any, props: Any) -> None:
        outcome["publish"] = reason
        published.set()

    client.on_connect, client.on_publish = on_connect, on_publish
    try:
        if settings.protocol == "mqtt5":
            client.connect(settings.host, settings.port, settings.keepalive_s, clean_start=True)
        else:
            client.connect(settings.host, settings.port, settings.keepalive_s)
        client.loop_start()
        if not connected.wait(timeout) or getattr(outcome.get("connect"), "is_failure", True):
            return False, f"broker refused or did not answer the connection ({outcome.get('connect')})"
        client.publish(topics.GALLERY_ANNOUNCE, data, qos=1, retain=True)
        if not published.wait(timeout):
            return False, "no acknowledgement from the broker"
        reason = outcome.get("publish")
        if reason is not None and getattr(reason, "is_failure", False):
            return False, f"broker refused the announcement ({reason}); check the ACL for edgeface-server"
        log.info("server.gallery.announced", version=doc["gallery_version"], url=doc["url"])
        return True, ""
    except OSError as e:
        return False, f"cannot reach the broker: {e}"
    finally:
        try:
            client.disconnect()
        finally:
            client.loop_stop()
