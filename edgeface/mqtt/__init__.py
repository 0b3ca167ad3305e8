"""Store-and-forward over MQTT: the topic tree, the JSON payloads, the device publisher, the ingest.

    from edgeface.mqtt import Publisher, enqueue_result, payloads
    pub = Publisher.from_config(config.mqtt, config.device, outbox)  # a thread draining the outbox at QoS 1
    pub.start()
    doc = payloads.result_payload(device_id=..., decision="match", candidates=[...], ...)
    enqueue_result(outbox, doc)                       # checked, encoded, durable on return
    pub.notify()
    ...
    pub.stop()

See docs/outbox-mqtt.md for the contract and the guarantees, deploy/mosquitto/ for the broker.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers and editors; at run time the names load on first use
    from . import payloads as payloads
    from . import topics as topics
    from .ingest import Ingest as Ingest
    from .ingest import IngestStats as IngestStats
    from .link import Backoff as Backoff
    from .link import LinkSettings as LinkSettings
    from .publisher import Publisher as Publisher
    from .publisher import PublisherStats as PublisherStats
    from .queue import enqueue_result as enqueue_result
    from .results_db import ResultStore as ResultStore

# Importing a settings module (``edgeface.mqtt.settings``, which the configuration loads for every
# command) must not pull in the whole package, so the names below load when first used (PEP 562).
_EXPORTS = {
    "Backoff": "link",
    "Ingest": "ingest",
    "IngestStats": "ingest",
    "LinkSettings": "link",
    "Publisher": "publisher",
    "PublisherStats": "publisher",
    "ResultStore": "results_db",
    "enqueue_result": "queue",
}
_MODULES = (
    "payloads",
    "topics",
)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    if name in _MODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Backoff",
    "Ingest",
    "IngestStats",
    "LinkSettings",
    "Publisher",
    "PublisherStats",
    "ResultStore",
    "enqueue_result",
    "payloads",
    "topics",
]
