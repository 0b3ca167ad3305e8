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

from . import payloads, topics
from .ingest import Ingest, IngestStats
from .link import Backoff, LinkSettings
from .publisher import Publisher, PublisherStats
from .queue import enqueue_result
from .results_db import ResultStore

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
