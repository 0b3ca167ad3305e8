"""The retained MQTT gallery announcement (``edgeface/v1/gallery/announce``, announce.v1.json).

Only a hint for units to sync now; they trust what verifies, never the announcement. Published with
the server's own broker account (``edgeface-server`` in the broker rules, edgeface/mqtt/dynsec.py) over a short-lived
clean-start connection, QoS 1, retained; MQTT 5 tells us if the ACL refused it.
"""

from __future__ import annotations

from typing import Any

from ..config import Config
from ..logs import get_logger
from ..mqtt import payloads, topics
from ..mqtt.link import LinkSettings
from ..mqtt.oneshot import request

log = get_logger(__name__)

ANNOUNCE_CLIENT_ID = "edgeface-server-announce"


def announce(config: Config, doc: dict[str, Any], *, timeout: float = 10.0) -> tuple[bool, str]:
    """Publish the announcement; returns (done, why not). Never raises for a network problem."""
    if not config.mqtt.host:
        return False, "no broker configured (mqtt.host)"
    data = payloads.encode(doc, "announce")
    settings = LinkSettings.from_config(config.mqtt, ANNOUNCE_CLIENT_ID)
    sent = request(settings, topics.GALLERY_ANNOUNCE, data, retain=True, timeout=timeout)
    if not sent.ok:
        return False, sent.why
    log.info("server.gallery.announced", version=doc["gallery_version"], url=doc["url"])
    return True, ""
