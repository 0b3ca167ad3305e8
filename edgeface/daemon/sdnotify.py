"""systemd's notify protocol, without a dependency: one datagram to ``$NOTIFY_SOCKET`` per message.

``Type=notify`` services say ``READY=1`` when they are up, ``WATCHDOG=1`` at least every
``WatchdogSec`` (systemd passes it as ``$WATCHDOG_USEC``; missing pings get the service killed and
restarted), ``STATUS=...`` for ``systemctl status``, and ``STOPPING=1`` while they shut down.
Outside systemd every call is a no-op.
"""

from __future__ import annotations

import os
import socket

from ..logs import get_logger

log = get_logger(__name__)


class Notifier:
    """Sends notify messages if the process runs under systemd (``$NOTIFY_SOCKET`` set)."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        env = dict(os.environ if env is None else env)
        addr = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + addr[1:] if addr.startswith("@") else addr  # '@' is the abstract namespace
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        self.watchdog_s: float | None = None
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 1e6
        self._failed = False

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *fields: str) -> bool:
        if not self.address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.connect(self.address)
                s.sendall("\n".join(fields).encode("utf-8"))
        except OSError as e:
            if not self._failed:  # say it once; a missing socket would otherwise log every ping
                log.warning("systemd.notify_failed", socket=self.address.replace("\0", "@"), error=str(e))
                self._failed = True
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def stopping(self, status: str = "") -> bool:
        return self.send("STOPPING=1", *([f"STATUS={status}"] if status else []))
