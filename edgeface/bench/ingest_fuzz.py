"""Ingest fuzz campaign: hostile and malformed messages among good ones, against a real broker and the
server's own ingest workers (``edgeface.server.ingest.make_worker`` over the server database).

Hypothesis generates the messages: good results from well-behaved units; results from hostile units
that follow the schema's patterns but carry impossible times, huge integers, out-of-range numbers,
control characters, unpaired surrogates, trailing newlines in ids; random schema breakage; raw bytes;
and device statuses, retained and not. Each message's fate is predicted by the contract's own check
(:func:`edgeface.mqtt.payloads.decode` plus the topic's device), then the campaign asserts what the
server did:

* every worker is still running (``worker.error`` is None, its thread alive);
* the stored result ids are exactly the accepted ones, and every good unit's result is among them;
* the rejected table holds exactly one row per rejected delivery, with the predicted reason
  (statuses reach every worker, results one worker of the shared subscription);
* after the workers reconnect, the retained poison statuses are delivered again, rejected again, and
  nothing stops.

Used by ``tests/server/test_ingest_fuzz.py`` (small) and ``edgeface bench ingest-fuzz`` (>= 10,000
messages). Needs hypothesis (the ``test`` extra).
"""

from __future__ import annotations

import base64
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EdgefaceError, PayloadError
from ..mqtt import payloads, topics
from ..mqtt.ingest import STATUS_MAX_BYTES
from ..mqtt.settings import MqttConfig
from ..outbox.uuid7 import new_id
from ..testing.broker import LocalBroker
from ..testing.mqttload import sample_result, wait_for

GOOD_UNITS = ("unit-good-0", "unit-good-1", "unit-good-2")
HOSTILE_UNITS = ("unit-evil-0", "unit-evil-1")
TIMESTAMP_RE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]{1,6})?Z"
MAX_PAYLOAD = MqttConfig().max_payload_bytes  # the workers run with the default


@dataclass(frozen=True)
class Message:
    """One MQTT message of the campaign and what the contract says must become of it."""

    unit: str
    kind: str  # "results" or "status"
    payload: bytes
    retain: bool = False

    @property
    def topic(self) -> str:
        return topics.results_topic(self.unit) if self.kind == "results" else topics.status_topic(self.unit)

    def fate(self) -> tuple[str, str]:
        """("store", id), ("status", ""), ("reject", kind) or ("ignore", "") for a cleared status."""
        if self.kind == "status" and not self.payload:
            return "ignore", ""
        name = "result" if self.kind == "results" else "status"
        limit = MAX_PAYLOAD if name == "result" else STATUS_MAX_BYTES
        try:
            doc = payloads.decode(self.payload, name, max_bytes=limit)
        except PayloadError as e:
            return "reject", e.kind
        if doc["device_id"] != self.unit:
            return "reject", "device_mismatch"
        return ("store", doc["id"]) if name == "result" else ("status", "")


def _dumps(doc: Any) -> bytes:
    """JSON as a hostile unit might send it: NaN/Infinity allowed, unpaired surrogates as \\u escapes."""
    return json.dumps(doc, allow_nan=True, ensure_ascii=True).encode()


def strategies() -> Any:
    """The hypothesis strategy of one :class:`Message` (hypothesis is imported only here)."""
    from hypothesis import strategies as st

    stamps = st.one_of(
        st.from_regex(TIMESTAMP_RE, fullmatch=True),
        st.sampled_from(
            [
                "2025-13-45T99:99:99Z",
                "2025-02-30T00:00:00Z",
                "2016-12-31T23:59:60Z",
                "0000-01-01T00:00:00Z",
                "2025-01-01T00:00:00Z\n",
                "2025-01-01T24:00:00Z",
            ]
        ),
    )
    numbers = st.one_of(
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([10**20, -1, 0, 2**31, 2**63, 1e308, 1.0000001, -1.0000001]),
    )
    text = st.one_of(
        st.text(max_size=24),
        st.sampled_from(
            ["\x00", "a\x00b", "\ud800", "x\udfff", "line\n", "\x1b[31m", "", "x" * 300, "<script>", "'; DROP"]
        ),
    )
    ids = st.one_of(
        st.sampled_from(["\n", " ", "\x00", "", "A"]).map(lambda s: new_id() + s),
        st.just("01890a5d-ac96-774b-bcce-b302099a8057"),
        text,
    )
    fields: list[tuple[tuple[Any, ...], Any]] = [
        (("captured_at",), stamps),
        (("gallery_version",), numbers),
        (("id",), ids),
        (("threshold",), numbers),
        (("candidates", 0, "score"), numbers),
        (("candidates", 0, "identity_id"), text),
        (("model_id",), text),
        (("source",), text),
        (("quality", "sharpness"), numbers),
        (("quality", "yaw"), numbers),
        (("face_box", 1), numbers),
        (("device_id",), st.sampled_from([*GOOD_UNITS, "x\n", ""])),
        (("location",), st.fixed_dictionaries({"lat": numbers, "lon": numbers})),
        (("candidates", 0, "display_name"), text),
        (("refusal_reasons",), st.lists(text, max_size=3)),
        (
            ("crop",),
            st.fixed_dictionaries(
                {
                    "format": st.just("jpeg"),
                    "width": numbers,
                    "height": numbers,
                    "data": st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode()),
                }
            ),
        ),
    ]
    edits = st.lists(st.one_of(*[st.tuples(st.just(path), values) for path, values in fields]), min_size=1, max_size=3)
    json_values = st.recursive(
        st.none() | st.booleans() | numbers | text,
        lambda children: st.lists(children, max_size=3) | st.dictionaries(text, children, max_size=3),
        max_leaves=6,
    )
    seeds = st.integers(0, 2**32 - 1)

    def good(seed: int, unit: str) -> Message:
        return Message(unit, "results", payloads.encode_result(sample_result(unit, random.Random(seed))))

    def hostile(seed: int, unit: str, changes: list[tuple[tuple[Any, ...], Any]]) -> Message:
        doc = sample_result(unit, random.Random(seed))
        for path, value in changes:
            _set(doc, path, value)
        return Message(unit, "results", _dumps(doc))

    def broken(seed: int, unit: str, key: str, value: Any, drop: str) -> Message:
        doc = sample_result(unit, random.Random(seed))
        doc.pop(drop, None)
        doc[key] = value
        return Message(unit, "results", _dumps(doc))

    def status(seed: int, unit: str, changes: list[tuple[str, Any]], retain: bool) -> Message:
        rng = random.Random(seed)
        doc = payloads.status_payload(
            device_id=unit,
            state=rng.choice(["online", "offline"]),
            reason="heartbeat",
            uptime_s=rng.uniform(0, 1e5),
            gallery_version=rng.randrange(1, 50),
            outbox={"pending": rng.randrange(100), "bytes": rng.randrange(10**6)},
        )
        for key, value in changes:
            doc[key] = value
        return Message(unit, "status", _dumps(doc), retain)

    status_edits = st.lists(
        st.one_of(
            st.tuples(st.just("ts"), stamps),
            st.tuples(st.just("gallery_version"), numbers),
            st.tuples(st.just("uptime_s"), numbers),
            st.tuples(st.just("device_id"), text),
            st.tuples(st.just("software_version"), text),
        ),
        max_size=2,
    )
    hostile_units = st.sampled_from(HOSTILE_UNITS)
    return st.one_of(
        st.builds(good, seeds, st.sampled_from(GOOD_UNITS)),
        st.builds(good, seeds, st.sampled_from(GOOD_UNITS)),
        st.builds(hostile, seeds, hostile_units, edits),
        st.builds(hostile, seeds, hostile_units, edits),
        st.builds(broken, seeds, hostile_units, text, json_values, st.sampled_from(["id", "quality", "decision", "x"])),
        st.builds(
            Message,
            hostile_units,
            st.just("results"),
            st.one_of(
                st.binary(max_size=200),
                st.just(b"[" * 5000),
                st.just(b'{"a": NaN}'),
                st.just(b"\xff\xfe{}"),
                st.just(b"{" + b" " * (MAX_PAYLOAD + 10) + b"}"),
            ),
        ),
        st.builds(status, seeds, hostile_units, status_edits, st.booleans()),
        st.builds(Message, hostile_units, st.just("status"), st.just(b""), st.just(True)),
    )


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    node = doc
    for part in path[:-1]:
        if isinstance(node, dict):
            node = node.setdefault(part, {})
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return
    last = path[-1]
    if isinstance(node, dict):
        node[last] = value
    elif isinstance(node, list) and isinstance(last, int) and last < len(node):
        node[last] = value


@dataclass
class Expected:
    """What the server must hold once every message is handled."""

    stored: set[str] = field(default_factory=set)
    good: set[str] = field(default_factory=set)
    rejections: Counter[str] = field(default_factory=Counter)  # kind -> rows (one per delivery)
    statuses: int = 0
    sent: Counter[str] = field(default_factory=Counter)  # family -> messages
    retained: dict[str, Message] = field(default_factory=dict)  # status topic -> last retained message

    def add(self, m: Message, workers: int) -> None:
        what, detail = m.fate()
        deliveries = workers if m.kind == "status" else 1
        if what == "store":
            self.stored.add(detail)
            if m.unit in GOOD_UNITS:
                self.good.add(detail)
        elif what == "reject":
            self.rejections[detail] += deliveries
        elif what == "status":
            self.statuses += deliveries
        self.sent[f"{m.kind}:{'good' if m.unit in GOOD_UNITS else 'hostile'}:{what}"] += 1
        if m.retain and m.kind == "status":
            self.retained[m.topic] = m


class Campaign:
    """A broker, a server database and ``workers`` server ingest workers, started and stopped together."""

    def __init__(self, workdir: Path, *, workers: int = 2, group: str = "edgeface-fuzz") -> None:
        from ..config import load_config
        from ..server.db import Database
        from ..testing.mqttload import write_toml

        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.broker = LocalBroker.plain(self.workdir / "broker")
        self.broker.start()
        url = f"sqlite:///{self.workdir / 'server.sqlite3'}"
        cfg = write_toml(
            self.workdir / "server.toml",
            {
                "server": {"database_url": url, "data_dir": str(self.workdir / "data"), "rejected_keep": 10**9},
                "mqtt": {
                    "host": "127.0.0.1",
                    "port": self.broker.port,
                    "tls": False,
                    "reconnect_min_s": 0.05,
                    "reconnect_max_s": 0.5,
                },
                "ingest": {"client_id": "fuzz-ingest", "group": group, "flush_ms": 20.0},
            },
        )
        self.config = load_config(cfg)
        self.db = Database(url)
        self.db.migrate()
        self.n_workers = workers
        self.workers: list[Any] = []
        self.expected = Expected()
        self._pub: Any = None

    def start_workers(self) -> None:
        from ..server.ingest import make_worker

        self.workers = [make_worker(self.config, self.db, k) for k in range(self.n_workers)]
        for w in self.workers:
            w.start()
        if not wait_for(lambda: all(w.stats.connected and w.stats.subscribed for w in self.workers), 30):
            raise EdgefaceError("the ingest workers did not subscribe: " + self.broker.log_tail())

    def stop_workers(self) -> None:
        for w in self.workers:
            w.stop()

    def send(self, messages: list[Message]) -> None:
        """Publish at QoS 1 and wait for every PUBACK; the expectations follow each message."""
        import paho.mqtt.client as mqtt

        if self._pub is None:
            self._pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fuzz-publisher", protocol=mqtt.MQTTv5)
            self._pub.max_inflight_messages_set(100)
            self._pub.connect("127.0.0.1", self.broker.port)
            self._pub.loop_start()
        infos = []
        for m in messages:
            self.expected.add(m, self.n_workers)
            infos.append(self._pub.publish(m.topic, m.payload, qos=1, retain=m.retain))
        for info in infos:
            info.wait_for_publish(30)

    def resubscribe(self) -> int:
        """Restart the workers (new sessions see the retained statuses again); returns the redeliveries
        of retained statuses expected to be rejected."""
        self.stop_workers()
        extra = 0
        for m in self.expected.retained.values():
            what, detail = m.fate()
            if what == "reject":
                self.expected.rejections[detail] += self.n_workers
                extra += self.n_workers
            elif what == "status":
                self.expected.statuses += self.n_workers
        self.start_workers()
        return extra

    def observed(self) -> dict[str, Any]:
        from sqlalchemy import func, select

        from ..server.tables import rejected, results

        with self.db.read() as conn:
            ids = [r[0] for r in conn.execute(select(results.c.id))]
            kinds = Counter(
                {k: int(n) for k, n in conn.execute(select(rejected.c.kind, func.count()).group_by(rejected.c.kind))}
            )
        return {"ids": ids, "rejected": kinds}

    def settle(self, timeout: float = 120) -> dict[str, Any]:
        """Wait until the database holds what is expected (or the timeout), then a little longer."""
        want_ids, want_rej = len(self.expected.stored), sum(self.expected.rejections.values())

        def done() -> bool:
            o = self.observed()
            return len(o["ids"]) >= want_ids and sum(o["rejected"].values()) >= want_rej

        wait_for(done, timeout, 0.1)
        time.sleep(0.5)  # anything extra would show now
        return self.observed()

    def check(self) -> dict[str, Any]:
        """Figures and every way the server differs from the contract (``problems`` empty when it holds)."""
        o = self.settle()
        e = self.expected
        ids = set(o["ids"])
        problems = []
        for k, w in enumerate(self.workers):
            if w.error is not None or w._thread is None or not w._thread.is_alive():
                problems.append(f"worker {k} stopped: {w.error!r}")
        if len(o["ids"]) != len(ids):
            problems.append("a result id is stored twice")
        if e.good - ids:
            problems.append(f"{len(e.good - ids)} good results were lost, e.g. {sorted(e.good - ids)[:3]}")
        if ids != e.stored:
            problems.append(f"stored ids differ: {len(e.stored - ids)} missing, {len(ids - e.stored)} unexpected")
        if o["rejected"] != e.rejections:
            problems.append(f"rejected rows by kind {dict(o['rejected'])} != expected {dict(e.rejections)}")
        statuses = sum(w.stats.statuses for w in self.workers)
        return {
            "messages": sum(e.sent.values()),
            "sent": dict(sorted(e.sent.items())),
            "stored": len(ids),
            "good_results": len(e.good),
            "good_lost": len(e.good - ids),
            "rejected": sum(o["rejected"].values()),
            "rejected_by_kind": dict(sorted(o["rejected"].items())),
            "statuses_recorded_last_session": statuses,
            "workers_alive": sum(1 for w in self.workers if w.error is None and w._thread and w._thread.is_alive()),
            "workers": self.n_workers,
            "problems": problems,
        }

    def close(self) -> None:
        self.stop_workers()
        if self._pub is not None:
            self._pub.loop_stop()
            self._pub.disconnect()
        self.db.dispose()
        self.broker.kill()


def generate(count: int, seed: int) -> list[Message]:
    """``count`` messages drawn by hypothesis, reproducibly from ``seed``."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed
    from hypothesis import strategies as st

    out: list[Message] = []
    per = 50
    strategy = strategies()

    @hseed(seed)
    @settings(
        max_examples=max(1, -(-count // per)),
        phases=[Phase.generate],
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(strategy, min_size=per, max_size=per))
    def draw(batch: list[Message]) -> None:
        out.extend(batch)

    draw()
    return out[:count]


def run_campaign(
    workdir: Path, *, messages: int = 10000, workers: int = 2, seed: int = 11, batch: int = 500
) -> dict[str, Any]:
    """The whole campaign; returns its figures (``problems`` lists every broken guarantee)."""
    drawn = generate(messages, seed)
    camp = Campaign(workdir, workers=workers)
    t0 = time.monotonic()
    try:
        camp.start_workers()
        for i in range(0, len(drawn), batch):
            camp.send(drawn[i : i + batch])
        # The review's case, certain to be in every run: a retained status with a real-looking, impossible
        # time, left on the broker for every future subscriber.
        poison = payloads.status_payload(device_id=HOSTILE_UNITS[0], state="online", reason="heartbeat")
        poison["ts"] = "2025-02-30T00:00:00Z"
        camp.send([Message(HOSTILE_UNITS[0], "status", _dumps(poison), retain=True)])
        first = camp.check()
        redelivered = camp.resubscribe()
        camp.send(
            [
                Message(
                    GOOD_UNITS[0], "results", payloads.encode_result(sample_result(GOOD_UNITS[0], random.Random(seed)))
                )
            ]
        )
        figures = camp.check()
        figures["retained_poison_redelivered"] = redelivered
        figures["problems"] = first["problems"] + figures["problems"]
        figures["seconds"] = round(time.monotonic() - t0, 1)
        return figures
    finally:
        camp.close()
