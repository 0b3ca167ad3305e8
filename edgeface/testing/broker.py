"""A real Mosquitto broker on loopback, started and stopped by tests and benchmarks.

Never a mock: the outbox, publisher and ingest are exercised against the same broker a
deployment runs. :meth:`LocalBroker.from_deploy` runs ``deploy/mosquitto/mosquitto.conf`` itself,
with its paths and ports rewritten to a temporary folder.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from ..errors import EdgefaceError

DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"


def mosquitto_binary() -> str:
    """Path of the mosquitto executable, or an error saying how to install it."""
    found = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if not found:
        raise EdgefaceError(
            "mosquitto is not installed; install it with `apt-get install mosquitto` "
            "(the benchmarks and tests start their own broker on loopback)"
        )
    return found


def dynsec_plugin() -> str:
    """Path of Mosquitto's dynamic security plugin (Debian ships it in the mosquitto package)."""
    found = sorted(glob.glob("/usr/lib/*/mosquitto_dynamic_security.so")) + sorted(
        glob.glob("/usr/lib/mosquitto_dynamic_security.so")
    )
    if not found:
        raise EdgefaceError(
            "Mosquitto's dynamic security plugin is missing (mosquitto_dynamic_security.so); "
            "install Mosquitto 2.0 or later from your distribution"
        )
    return found[0]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _common(data_dir: Path) -> str:
    lines = [f"persistence_location {data_dir}/"]
    if os.geteuid() == 0:
        lines.append("user root")  # as root, mosquitto would switch to user 'mosquitto' and lose its files
    return "\n".join(lines) + "\n"


class LocalBroker:
    """A mosquitto process with a config file in ``workdir``; restartable, killable."""

    def __init__(self, workdir: Path, config_text: str, port: int, ports: dict[str, int] | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.workdir / "data"
        self.data_dir.mkdir(exist_ok=True)
        self.conf_path = self.workdir / "mosquitto.conf"
        self.conf_path.write_text(config_text)
        self.log_path = self.workdir / "mosquitto.log"
        self.port = port
        self.ports = ports or {"main": port}
        self.proc: subprocess.Popen[bytes] | None = None
        self.rules_path: Path | None = None
        self.starts = 0

    @classmethod
    def plain(cls, workdir: Path, *, port: int | None = None, persistence: bool = True, extra: str = "") -> LocalBroker:
        """Anonymous, no TLS, loopback only: for throughput figures and fault campaigns."""
        port = port or free_port()
        workdir = Path(workdir)
        text = (
            f"listener {port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence {'true' if persistence else 'false'}\nautosave_interval 30\n"
            "max_queued_messages 0\nmax_queued_bytes 0\nmax_inflight_messages 100\nmax_packet_size 262144\n"
            "log_type error\nlog_type warning\nlog_type notice\nconnection_messages true\n"
            + _common(workdir / "data")
            + extra
        )
        return cls(workdir, text, port)

    @classmethod
    def from_deploy(
        cls, workdir: Path, pki_dir: Path, *, rules: dict[str, Any], conf: Path = DEPLOY_DIR / "mosquitto.conf"
    ) -> LocalBroker:
        """The deployment config, on free loopback ports, with the PKI from ``pki_dir`` and ``rules``
        (the dynamic security plugin's configuration, :func:`edgeface.mqtt.dynsec.build`).

        ``pki_dir`` holds ``ca.crt`` (units), ``central-ca.crt`` (central accounts), ``server.crt`` and
        ``server.key`` (see :mod:`edgeface.mqtt.certs`). Ports: ``ports['mtls']`` (the 8883 listener),
        ``ports['password']`` (8884) and ``ports['central']`` (8885).
        """
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        etc = workdir / "etc"
        etc.mkdir(exist_ok=True)
        for name in ("ca.crt", "central-ca.crt", "server.crt", "server.key"):
            shutil.copy(Path(pki_dir) / name, etc / name)
        data = workdir / "data"
        data.mkdir(exist_ok=True)
        rules_path = data / "dynamic-security.json"
        rules_path.write_text(json.dumps(rules, indent=1))
        os.chmod(rules_path, 0o600)
        text = Path(conf).read_text()
        ports = {"mtls": free_port(), "password": free_port(), "central": free_port()}
        text = text.replace("/etc/mosquitto/edgeface/", f"{etc}/").replace("/var/lib/mosquitto/", f"{data}/")
        text = re.sub(
            r"^plugin /usr/lib/[^/]+/mosquitto_dynamic_security.so\s*$",
            f"plugin {dynsec_plugin()}",
            text,
            flags=re.MULTILINE,
        )
        for name, port in (("mtls", 8883), ("password", 8884), ("central", 8885)):
            text = re.sub(rf"^listener {port}\s*$", f"listener {ports[name]} 127.0.0.1", text, flags=re.MULTILINE)
        settings = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        if "/etc/mosquitto" in settings or re.search(r"^listener (8883|8884|8885)\b", settings, flags=re.MULTILINE):
            raise EdgefaceError(f"{conf}: could not rewrite every path and listener for a local test broker")
        if os.geteuid() == 0:
            text += "\nuser root\n"
        broker = cls(workdir, text, ports["mtls"], ports)
        broker.rules_path = rules_path
        return broker

    # process control

    def start(self, timeout: float = 10.0) -> None:
        """Start mosquitto and wait until every listener accepts connections."""
        if self.alive:
            return
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [mosquitto_binary(), "-c", str(self.conf_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1
        deadline = time.monotonic() + timeout
        pending = set(self.ports.values())
        while pending:
            if self.proc.poll() is not None:
                raise EdgefaceError(
                    f"mosquitto exited with {self.proc.returncode}; see {self.log_path}:\n" + self.log_tail()
                )
            for port in list(pending):
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        pending.discard(port)
                except OSError:
                    pass
            if pending and time.monotonic() > deadline:
                self.kill()
                raise EdgefaceError(
                    f"mosquitto did not open ports {sorted(pending)} in {timeout} s; see {self.log_path}"
                )
            if pending:
                time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop cleanly (SIGTERM): mosquitto saves its persistence file first."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
