"""``edgeface bench outbox``: how fast results are stored and drained at QoS 1 to a local broker.

Three phases on one real Mosquitto broker (loopback), with an ``edgeface ingest`` process storing
what arrives so delivery is checked, not assumed:

1. *enqueue*: ``Outbox.put`` one result at a time (one fsync each with synchronous=full), no
   network: latency per put;
2. *drain*: the outbox holds N results; the publisher sends them at QoS 1 and deletes each on its
   PUBACK: results per second from start to an empty outbox;
3. *concurrent*: a producer puts results one by one while the publisher drains: put latency under
   load (what the pipeline sees) and the drain rate.

At the end the ingest's database must hold every result once.

Payloads are sealed at rest as on a unit (``encrypt``, on by default: AES-256-GCM under a random device key's
outbox sub-key); ``crop_bytes`` adds a face crop of about that many JPEG bytes to every result (``crop_jpeg_bytes``
says how many it has), as ``mqtt.include_crop`` does on a unit.
"""

from __future__ import annotations

import base64
import random
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..mqtt import payloads
from ..mqtt.link import LinkSettings
from ..mqtt.publisher import Publisher
from ..outbox import Outbox
from ..outbox.store import Synchronous
from ..testing.broker import LocalBroker
from ..testing.mqttload import Child, outbox_item, sample_result, wait_for, write_toml
from . import report

DEVICE = "bench-unit"


def _crop(rng: random.Random, nbytes: int) -> dict[str, Any] | None:
    if nbytes <= 0:
        return None
    import numpy as np

    # Noise compresses badly: shrink the side until the JPEG is about nbytes (a worst case for size).
    side = 160
    img = (np.random.default_rng(rng.randrange(2**32)).integers(0, 255, (side, side, 3))).astype("uint8")
    return payloads.crop_payload(img, max_bytes=nbytes)


def _stored(db: Path) -> tuple[int, int]:
    if not db.exists():
        return 0, 0
    con = sqlite3.connect(db, timeout=30)
    try:
        n, distinct = con.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM results").fetchone()
    except sqlite3.OperationalError:
        return 0, 0
    finally:
        con.close()
    return int(n), int(distinct)


def run(
    workdir: Path,
    *,
    results: int = 20000,
    concurrent: int = 5000,
    inflight: int = 100,
    synchronous: Synchronous = "full",
    crop_bytes: int = 0,
    encrypt: bool = True,
    seed: int = 1,
    say: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """Run the three phases; returns the figures (see the module docstring)."""
    rng = random.Random(seed)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    broker = LocalBroker.plain(workdir / "broker")
    broker.start()
    db = workdir / "ingest.sqlite3"
    cfg = write_toml(
        workdir / "ingest.toml",
        {
            "mqtt": {
                "host": "127.0.0.1",
                "port": broker.port,
                "tls": False,
                "reconnect_min_s": 0.1,
                "reconnect_max_s": 1.0,
            },
            "ingest": {"db": str(db), "group": "bench", "client_id": "bench-ingest"},
        },
    )
    ingest = Child(
        ["--config", str(cfg), "--log-level", "warning", "ingest", "--stats-json", str(workdir / "ingest-stats.json")],
        workdir / "ingest.log",
    )
    from ..protect.sealed import Sealer

    sealer = Sealer(secrets.token_bytes(32), "outbox") if encrypt else None
    box = Outbox(workdir / "outbox.sqlite3", synchronous=synchronous, max_results=10**7, max_bytes=2**34, sealer=sealer)
    settings = LinkSettings(host="127.0.0.1", port=broker.port, client_id=DEVICE, tls=False)
    crop = _crop(rng, crop_bytes)
    figures: dict[str, Any] = {
        "results": results,
        "concurrent_results": concurrent,
        "inflight": inflight,
        "synchronous": synchronous,
        "crop_bytes": crop_bytes,
        "crop_jpeg_bytes": len(base64.b64decode(crop["data"])) if crop else 0,
        "encrypt": encrypt,
        "qos": 1,
    }
    try:
        ingest.start()
        if not wait_for(lambda: "as bench-ingest" in broker.log_tail(50), 20):
            raise RuntimeError(f"the ingest did not connect; see {ingest.log_path}")
        time.sleep(0.3)  # let it subscribe

        say(f"building {results} results")
        items = [outbox_item(sample_result(DEVICE, rng, crop=crop)) for _ in range(results)]
        figures["payload_bytes_mean"] = round(sum(len(i[2]) for i in items) / len(items), 1)

        say("phase 1: enqueue (no network)")
        lat = []
        t0 = time.perf_counter()
        for item in items:
            t = time.perf_counter()
            box.put(*item)
            lat.append((time.perf_counter() - t) * 1000)
        dt = time.perf_counter() - t0
        figures["enqueue"] = {
            "results_per_s": round(results / dt, 1),
            **report.percentiles(lat, (50, 95, 99, 99.9)),
            "max": round(max(lat), 3),
        }

        say("phase 2: drain at QoS 1")
        pub = Publisher(
            box, settings, DEVICE, inflight=inflight, heartbeat_s=30, reconnect_min_s=0.1, reconnect_max_s=1.0
        )
        t0 = time.perf_counter()
        pub.start()
        if not pub.wait_drained(600):
            raise RuntimeError("the outbox did not drain in 600 s")
        dt = time.perf_counter() - t0
        figures["drain"] = {
            "results_per_s": round(results / dt, 1),
            "seconds": round(dt, 3),
            "published": pub.stats.published,
            "acked": pub.stats.acked,
        }

        say("phase 3: enqueue while draining")
        more = [outbox_item(sample_result(DEVICE, rng, crop=crop)) for _ in range(concurrent)]
        lat = []

        def produce() -> None:
            for item in more:
                t = time.perf_counter()
                box.put(*item)
                lat.append((time.perf_counter() - t) * 1000)
                pub.notify()

        t0 = time.perf_counter()
        producer = threading.Thread(target=produce)
        producer.start()
        producer.join()
        if not pub.wait_drained(600):
            raise RuntimeError("the outbox did not drain in 600 s")
        dt = time.perf_counter() - t0
        figures["concurrent"] = {
            "results_per_s": round(concurrent / dt, 1),
            "enqueue_ms": {**report.percentiles(lat, (50, 95, 99, 99.9)), "max": round(max(lat), 3)},
        }
        pub.stop()

        total = results + concurrent
        say("waiting for the ingest to store everything")
        wait_for(lambda: _stored(db)[0] >= total, 120, 0.2)
        n, distinct = _stored(db)
        figures["delivery"] = {
            "sent": total,
            "stored": distinct,
            "lost": total - distinct,
            "duplicates_stored": n - distinct,
        }
        figures["peak_rss_mb"] = report.rss_mb()
    finally:
        ingest.stop()
        box.close()
        broker.stop()
    return figures
