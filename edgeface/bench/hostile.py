"""The fault campaign's hostile unit: a unit with a valid certificate of its own that tries to take the
ingest's client id, join its shared subscription, read every unit's results, and sends poison."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

from ..mqtt import payloads, topics
from ..outbox.uuid7 import new_id
from ..testing.broker import LocalBroker
from ..testing.mqttload import sample_result, wait_for

DEVICE = "field-unit-1"
HOSTILE = "field-unit-666"
GROUP = "campaign"
INGEST_CLIENT = "campaign-ingest"


def poison(rng: random.Random) -> list[tuple[str, bytes, bool]]:
    """(topic, payload, retain) of what a hostile unit sends on its own topics."""
    docs = []
    for key, value in (
        ("captured_at", "2025-13-45T99:99:99Z"),
        ("gallery_version", 10**20),
        ("id", new_id() + "\n"),
        ("model_id", "m\x00"),
        ("threshold", 1e308),
    ):
        doc = sample_result(HOSTILE, rng)
        doc[key] = value
        docs.append((topics.results_topic(HOSTILE), json.dumps(doc).encode(), False))
    status = payloads.status_payload(device_id=HOSTILE, state="online", reason="heartbeat")
    status["ts"] = "2025-02-30T00:00:00Z"
    docs.append((topics.status_topic(HOSTILE), json.dumps(status).encode(), True))
    docs.append((topics.results_topic(HOSTILE), bytes(rng.randrange(256) for _ in range(64)), False))
    return docs


def visit(broker: LocalBroker, pki: dict[str, Path], rng: random.Random) -> Counter[str]:
    """One visit of the hostile unit (see the module docstring); returns what it tried and got."""
    import paho.mqtt.client as mqtt

    out: Counter[str] = Counter()
    got: dict[str, list[Any]] = {"connack": [], "suback": [], "puback": [], "messages": []}
    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=rng.choice([INGEST_CLIENT, DEVICE, HOSTILE]), protocol=mqtt.MQTTv5
    )
    c.tls_set(ca_certs=str(pki["ca"]), certfile=str(pki[f"{HOSTILE}.crt"]), keyfile=str(pki[f"{HOSTILE}.key"]))
    c.on_connect = lambda cl, u, f, rc, p: got["connack"].append(rc)
    c.on_subscribe = lambda cl, u, mid, rcs, p: got["suback"].extend(rcs)
    c.on_publish = lambda cl, u, mid, rc, p: got["puback"].append(rc)
    c.on_message = lambda cl, u, m: got["messages"].append(m.topic)
    c.connect("127.0.0.1", broker.ports["mtls"])
    c.loop_start()
    try:
        if not wait_for(lambda: got["connack"], 5) or got["connack"][0].is_failure:
            out["connect_refused"] += 1
            return out
        out["client_id_attempts"] += 1
        filters = [f"$share/{GROUP}/{topics.RESULTS_FILTER}", topics.RESULTS_FILTER, "#"]
        for f in filters:
            c.subscribe(f, qos=1)
        wait_for(lambda: len(got["suback"]) >= len(filters), 5)
        out["subscriptions_tried"] += len(filters)
        out["subscriptions_granted"] += sum(1 for r in got["suback"] if not r.is_failure)
        messages = poison(rng)
        for topic, data, retain in messages:
            c.publish(topic, data, qos=1, retain=retain)
        wait_for(lambda: len(got["puback"]) >= len(messages), 5)
        out["poison_sent"] += len(messages)
        time.sleep(0.1)
        out["results_seen"] += len(got["messages"])
    finally:
        c.loop_stop()
        c.disconnect()
    return out
