"""Helpers shared by the outbox benchmark, the fault campaign and the tests: realistic results and
the child processes (publisher, ingest) they run."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..mqtt import payloads, topics
from ..outbox import Priority


def sample_result(
    device_id: str, rng: random.Random, *, match_share: float = 0.2, crop: dict | None = None
) -> dict[str, Any]:
    """A plausible result: 5 candidates, quality figures, a match now and then."""
    decision = "match" if rng.random() < match_share else "no_match"
    top = rng.uniform(0.62, 0.95) if decision == "match" else rng.uniform(0.2, 0.59)
    scores = sorted([top] + [rng.uniform(0.0, top) for _ in range(4)], reverse=True)
    cands = [payloads.Candidate(f"person-{rng.randrange(100000):05d}", s) for s in scores]
    quality = {
        "score": rng.uniform(0.6, 1.0),
        "size_px": rng.uniform(40, 300),
        "sharpness": rng.uniform(15, 400),
        "yaw": rng.uniform(-60, 60),
        "pitch": rng.uniform(-40, 40),
        "roll": rng.uniform(-20, 20),
    }
    return payloads.result_payload(
        device_id=device_id,
        decision=decision,
        candidates=cands,
        threshold=0.6,
        quality=quality,
        gallery_version=7,
        model_id="mobilefacenet-v1-int8",
        source="cam0",
        crop=crop,
        face_box=[rng.uniform(0, 500), rng.uniform(0, 300), rng.uniform(500, 900), rng.uniform(300, 700)],
    )


def outbox_item(doc: dict[str, Any]) -> tuple[str, str, bytes, Priority]:
    """``(id, topic, payload, priority)`` as :meth:`Outbox.put_many` takes them."""
    return (
        doc["id"],
        topics.results_topic(doc["device_id"]),
        payloads.encode_result(doc),
        Priority.for_decision(doc["decision"]),
    )


def digest(payload: bytes | str) -> str:
    data = payload.encode() if isinstance(payload, str) else payload
    return hashlib.sha256(data).hexdigest()


def write_toml(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    """A small TOML config file (strings, numbers, booleans)."""

    def val(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {val(v)}" for k, v in values.items()]
        lines.append("")
    Path(path).write_text("\n".join(lines))
    return Path(path)


class Child:
    """An ``edgeface`` command in its own process (output to a log file), killable like a crash."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.args = [sys.executable, "-c", "import sys; from edgeface.cli import main; sys.exit(main())", *args]
        self.log_path = Path(log_path)
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.args, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )
        self.starts += 1

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no clean-up runs, as in a power cut or an OOM kill."""
        if self.alive:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not exit in time."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def wait_for(condition: Any, timeout: float, interval: float = 0.05) -> bool:
    """Poll ``condition()`` until it is true or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
