"""``edgeface bench ingest``: results per second the central server stores from a local broker, with
1 and with N ingest worker processes on the MQTT 5 shared subscription, and a check that every result
is stored exactly once.

Method (per worker count): start mosquitto and the workers (``edgeface server run --no-web``, each its
own process), warm up until every worker stores, then stop the workers (SIGSTOP), publish the whole
load at QoS 1 so the broker queues it for them, resume them (SIGCONT) and time until the database holds
every result. Timing a backlog measures the workers, not the publisher sharing the CPU with them.
Afterwards the stored ids are compared with the published ids: missing or duplicated ids fail the run.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from ..mqtt import payloads, topics
from ..testing.broker import LocalBroker
from ..testing.mqttload import Child, sample_result, wait_for, write_toml


def _publish(port: int, docs: list[dict[str, Any]]) -> float:
    """Publish ``docs`` at QoS 1 and wait for every PUBACK; returns seconds."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{os.getpid()}", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(100)
    client.max_queued_messages_set(0)
    acked = threading.Semaphore(0)
    refused: list[Any] = []

    def on_publish(c: Any, u: Any, mid: int, reason: Any, props: Any) -> None:
        if getattr(reason, "is_failure", False) or getattr(reason, "value", 0) == 16:  # 0x10: no subscriber
            refused.append(reason)
        acked.release()

    client.on_publish = on_publish
    client.connect("127.0.0.1", port, 60, clean_start=True)
    client.loop_start()
    t0 = time.monotonic()
    try:
        for d in docs:
            client.publish(topics.results_topic(d["device_id"]), payloads.encode_result(d), qos=1)
        for _ in docs:
            if not acked.acquire(timeout=60):
                raise RuntimeError("the broker stopped acknowledging results")
    finally:
        client.disconnect()
        client.loop_stop()
    if refused:
        raise RuntimeError(f"the broker refused {len(refused)} results ({refused[0]}): is an ingest subscribed?")
    return time.monotonic() - t0


def run_ingest_bench(
    workdir: Path, *, results: int = 20000, workers: tuple[int, ...] = (1, 2), devices: int = 8, seed: int = 7
) -> list[dict[str, Any]]:
    """One row of figures per worker count (see the module docstring)."""
    from sqlalchemy import func, select

    from ..server.db import Database
    from ..server.ingest import DbResultStore
    from ..server.tables import results as results_table

    rng = random.Random(seed)
    rows = []
    for n in workers:
        wd = Path(workdir) / f"workers-{n}"
        wd.mkdir(parents=True, exist_ok=True)
        broker = LocalBroker.plain(wd / "broker")
        broker.start()
        url = f"sqlite:///{wd / 'server.sqlite3'}"
        db = Database(url)
        db.migrate()
        store = DbResultStore(db)
        cfg = write_toml(
            wd / "server.toml",
            {
                "server": {"database_url": url, "data_dir": str(wd / "data")},
                "mqtt": {"host": "127.0.0.1", "port": broker.port, "tls": False},
                "ingest": {"client_id": f"bench-ingest-{n}", "group": "edgeface-bench"},
                "logging": {"level": "warning"},
            },
        )
        children = [
            Child(
                ["--config", str(cfg), "server", "run", "--no-web", "--ingest-workers", "1", "--worker-index", str(k)],
                wd / f"worker-{k}.log",
            )
            for k in range(n)
        ]
        try:
            for c in children:
                c.start()
            warm = [sample_result(f"unit-{i % devices:03d}", rng) for i in range(50 * n)]
            deadline = time.monotonic() + 60
            while True:  # until every worker subscribed: results published before then would be refused
                try:
                    _publish(broker.port, warm)
                    break
                except RuntimeError as e:
                    if time.monotonic() > deadline:
                        raise RuntimeError("ingest workers did not subscribe: " + children[0].log_tail()) from e
                    time.sleep(0.5)
            n_warm = len(warm)
            if not wait_for(lambda s=store, n=n_warm: s.count() >= n, 60):
                raise RuntimeError("warm-up results were not stored: " + children[0].log_tail())
            docs = [sample_result(f"unit-{i % devices:03d}", rng) for i in range(results)]
            for c in children:
                assert c.proc is not None
                os.kill(c.proc.pid, signal.SIGSTOP)
            pub_s = _publish(broker.port, docs)
            base = store.count()
            t0 = time.monotonic()
            for c in children:
                assert c.proc is not None
                os.kill(c.proc.pid, signal.SIGCONT)
            if not wait_for(lambda s=store, n=base + results: s.count() >= n, 300, 0.02):
                raise RuntimeError(f"only {store.count() - base} of {results} stored: " + children[0].log_tail())
            secs = time.monotonic() - t0
            time.sleep(0.5)  # anything extra (a duplicate would have been refused by the key) settles
            want = {d["id"] for d in warm + docs}
            with db.read() as conn:
                ids = [r[0] for r in conn.execute(select(results_table.c.id))]
                distinct = conn.execute(select(func.count(func.distinct(results_table.c.id)))).scalar_one()
            rows.append(
                {
                    "workers": n,
                    "results": results,
                    "seconds": round(secs, 3),
                    "results_per_s": round(results / secs, 1),
                    "publish_s": round(pub_s, 3),
                    "stored_rows": len(ids),
                    "distinct_ids": int(distinct),
                    "duplicate_rows": len(ids) - int(distinct),
                    "missing": len(want - set(ids)),
                    "unexpected": len(set(ids) - want),
                }
            )
        finally:
            for c in children:
                if c.proc is not None and c.alive:
                    os.kill(c.proc.pid, signal.SIGCONT)
                c.stop()
            db.dispose()
            broker.kill()
    return rows
