"""`edgeface ingest --db FILE` as a process: results from a real broker land in FILE (not in the ingest.db
setting's file), and SIGTERM stops it cleanly with its counters written."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
from pathlib import Path

from edgeface.mqtt import ResultStore, payloads, topics
from edgeface.testing.broker import LocalBroker
from edgeface.testing.mqttload import sample_result, wait_for


def test_ingest_stores_into_the_db_given(tmp_path: Path, broker: LocalBroker) -> None:
    import paho.mqtt.client as mqtt

    db, configured = tmp_path / "given.sqlite3", tmp_path / "configured.sqlite3"
    stats = tmp_path / "stats.json"
    sets = ["mqtt.host=127.0.0.1", f"mqtt.port={broker.port}", "mqtt.tls=false", f"ingest.db={configured}"]
    args = [sys.executable, "-m", "edgeface", *[a for s in sets for a in ("--set", s)]]
    proc = subprocess.Popen(
        [*args, "ingest", "--db", str(db), "--client-id", "ingest-cli-test", "--stats-json", str(stats)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ingest-cli-pub", protocol=mqtt.MQTTv5)
    try:
        c.connect("127.0.0.1", broker.port)
        c.loop_start()
        rng = random.Random(3)
        docs = [sample_result("unit-c", rng) for _ in range(5)]

        def stored() -> int:
            if not db.exists():
                return 0
            s = ResultStore(db)
            try:
                return s.count()
            finally:
                s.close()

        # results published before the worker subscribed are not kept by the broker: publish until stored
        deadline_ok = wait_for(
            lambda: (
                [
                    c.publish(topics.results_topic("unit-c"), payloads.encode_result(d), qos=1).wait_for_publish(5)
                    for d in docs
                ]
                and stored() >= 5
            ),
            60,
        )
        assert deadline_ok, proc.stderr.read1().decode(errors="replace") if proc.poll() is not None else "not stored"  # type: ignore[union-attr]
    finally:
        c.loop_stop()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    assert not configured.exists()  # --db wins over ingest.db
    figures = json.loads(stats.read_text())
    assert figures["stored"] == 5 and figures["duplicates"] >= 0, figures
