"""What the running daemon last wrote about itself (``status.json``), for the checks that must not take a
device from it: a camera opened twice is busy, and a second MQTT connection under the unit's identity
would take over the daemon's session."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import Config


def running_daemon(config: Config) -> dict[str, Any] | None:
    """The daemon's status document when it is running now, else None."""
    from ..daemon.status import daemon_state, read_status, status_path

    doc = read_status(status_path(config))
    return doc if doc is not None and daemon_state(doc, time.time()) == "running" else None
