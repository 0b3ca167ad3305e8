"""Store-and-forward over MQTT: the topic tree, the JSON payloads, the device publisher, the ingest.

    from edgeface.mqtt import Publisher, Ingest, ResultStore, payloads, topics
    pub = Publisher.from_config(config, outbox)       # a thread that drains the outbox at QoS 1
    pub.start(); ...; pub.notify(); ...; pub.stop()

See docs/outbox-mqtt.md for the contract and the guarantees, deploy/mosquitto/ for the broker.
"""

from . import payloads, topics
from .ingest import Ingest, IngestStats, ResultStore
from .link import Backoff, LinkSettings
from .publisher import Publisher, PublisherStats

__all__ = ["Backoff", "Ingest", "IngestStats", "LinkSettings", "Publisher", "PublisherStats", "ResultStore",
           "payloads", "topics"]
