"""Sections no single package owns: how edgeface logs, and the unit's identity (``device.id`` is read
by the MQTT link and the daemon alike, and the MQTT package must not import the daemon)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .fields import setting


@dataclass(frozen=True)
class LoggingConfig:
    """How edgeface writes its log (always one event per line, to stderr)."""

    level: Literal["debug", "info", "warning", "error"] = setting("info", "Lowest level written.")
    format: Literal["text", "json"] = setting(
        "text", "'text' (key=value, for people) or 'json' (one JSON object per line, for collectors)."
    )


@dataclass(frozen=True)
class DeviceConfig:
    """This field unit's identity on the network."""

    id: str = setting(
        "",
        "Device id: 1-64 letters, digits, '.', '_' or '-'. It is the <id> level of the unit's MQTT topics "
        "and must equal the CN of its client certificate (or its broker username); empty means the host name.",
    )
