"""The MQTT topic tree, version 1. Every topic edgeface uses is built here.

    edgeface/v1/devices/<device_id>/results    QoS 1, a device's results (result.v1.json)
    edgeface/v1/devices/<device_id>/status     QoS 1, retained; heartbeats and the "offline" last will
    edgeface/v1/devices/<device_id>/commands   QoS 1, server to device (command.v1.json)
    edgeface/v1/devices/<device_id>/replies    QoS 1, device to server: a command's outcome (reply.v1.json)
    edgeface/v1/gallery/announce               QoS 1, retained; the newest gallery (announce.v1.json)

The broker's rules (edgeface/mqtt/dynsec.py) let a device write only under its own ``<device_id>``,
which must be its certificate CN (or broker username).
"""

from __future__ import annotations

import re

from ..errors import ConfigError

ROOT = "edgeface/v1"
GALLERY_ANNOUNCE = f"{ROOT}/gallery/announce"
RESULTS_FILTER = f"{ROOT}/devices/+/results"
STATUS_FILTER = f"{ROOT}/devices/+/status"
REPLIES_FILTER = f"{ROOT}/devices/+/replies"
REPLIES_SHARED = f"$share/edgeface-replies/{REPLIES_FILTER}"  # the servers' reply listeners: one takes each
# \Z, not $: Python's $ also matches before a trailing newline ("unit-a\n" would pass).
DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z", re.ASCII)
SHARE_GROUP = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z", re.ASCII)


def check_device_id(device_id: str, key: str = "device.id") -> str:
    """Return ``device_id`` if it can be a topic level and a certificate CN; else raise ConfigError."""
    if not DEVICE_ID.match(device_id or ""):
        raise ConfigError(
            f"{key} = {device_id!r} is not a valid device id: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (it becomes a topic level and the certificate CN)."
        )
    return device_id


def results_topic(device_id: str) -> str:
    return f"{ROOT}/devices/{check_device_id(device_id)}/results"


def status_topic(device_id: str) -> str:
    return f"{ROOT}/devices/{check_device_id(device_id)}/status"


def commands_topic(device_id: str) -> str:
    return f"{ROOT}/devices/{check_device_id(device_id)}/commands"


def replies_topic(device_id: str) -> str:
    return f"{ROOT}/devices/{check_device_id(device_id)}/replies"


def shared_results_filter(group: str) -> str:
    """The MQTT 5 shared subscription that spreads all devices' results over a group of ingest workers."""
    if not SHARE_GROUP.match(group):
        raise ConfigError(f"ingest.group = {group!r}: use 1-64 letters, digits, '.', '_' or '-'.")
    return f"$share/{group}/{RESULTS_FILTER}"


def parse_device_topic(topic: str) -> tuple[str, str] | None:
    """``(device_id, kind)`` for ``edgeface/v1/devices/<id>/<kind>``, else None."""
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:3]) != f"{ROOT}/devices" or not DEVICE_ID.match(parts[3]):
        return None
    return parts[3], parts[4]
