"""The broker's access rules, as a configuration file of Mosquitto's dynamic security plugin.

Why not Mosquitto's ``acl_file``: in Mosquitto 2.0 it never checks *subscriptions* (``security_default.c``
allows every SUBSCRIBE and filters only on delivery). A unit could then join the ingest's shared
subscription ``$share/edgeface-ingest/edgeface/v1/devices/+/results``: the broker routes a share of
every unit's results to it, drops them on the read check, and the senders have their PUBACK, so the
results are lost. The dynamic security plugin checks subscriptions (``subscribeLiteral``) and is
bundled with Mosquitto, so the rules below allow each client exactly its topics and nothing else:

* a unit (role ``unit:<id>``): publish its own results, status (the last will included) and command
  replies, subscribe to and receive its own commands and the gallery announcement;
* the ingest (role ``edgeface-ingest``): subscribe to the shared results subscription of its group and to
  device statuses, and receive them;
* the server (role ``edgeface-server``): read results, statuses and command replies, publish commands
  and the retained gallery announcement, and send the plugin's control commands (``$CONTROL/dynamic-security``):
  revoking a unit disables its account and takes its role away (:func:`revoke_request`). That makes the
  server's broker account a broker administrator; it already holds the key that can wipe every unit;
* the default for everything else, and for any identity not listed, is deny.

The plugin has no per-client topic patterns in Mosquitto 2.0 (no ``%u``), so every unit gets a role of
its own, written here or added to a running broker with ``mosquitto_ctrl dynsec`` (docs in
deploy/mosquitto/README.md). Passwords are stored as the plugin does: PBKDF2-HMAC-SHA512, 12-byte salt.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import ConfigError
from . import topics

CENTRAL = ("edgeface-server", "edgeface-ingest")  # identities reserved for the central accounts
PBKDF2_ITERATIONS = 100_000
SALT_BYTES = 12  # SALT_LEN in Mosquitto's password_mosq.h


def _acl(acltype: str, topic: str, allow: bool = True, priority: int = 0) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "priority": priority, "allow": allow}


def unit_role(device_id: str) -> dict[str, Any]:
    """The role of one unit: its own topics and the announcement, literally; nothing else."""
    check_device_id(device_id)
    commands, announce = topics.commands_topic(device_id), topics.GALLERY_ANNOUNCE
    return {
        "rolename": f"unit:{device_id}",
        "acls": [
            _acl("publishClientSend", topics.results_topic(device_id)),
            _acl("publishClientSend", topics.status_topic(device_id)),
            _acl("publishClientSend", topics.replies_topic(device_id)),
            _acl("subscribeLiteral", commands),
            _acl("subscribeLiteral", announce),
            _acl("publishClientReceive", commands),
            _acl("publishClientReceive", announce),
            _acl("unsubscribeLiteral", commands),
            _acl("unsubscribeLiteral", announce),
        ],
    }


def ingest_role(group: str = "edgeface-ingest") -> dict[str, Any]:
    """The ingest workers' role: the shared results subscription of ``group``, and device statuses."""
    return {
        "rolename": "edgeface-ingest",
        "acls": [
            _acl("subscribeLiteral", topics.shared_results_filter(group)),
            _acl("subscribeLiteral", topics.STATUS_FILTER),
            _acl("unsubscribeLiteral", topics.shared_results_filter(group)),
            _acl("unsubscribeLiteral", topics.STATUS_FILTER),
            _acl("publishClientReceive", topics.RESULTS_FILTER),
            _acl("publishClientReceive", topics.STATUS_FILTER),
        ],
    }


def server_role(group: str = "edgeface-ingest") -> dict[str, Any]:
    """The web application's role: what the ingest may do, plus commands and the announcement."""
    role = ingest_role(group)
    role["rolename"] = "edgeface-server"
    role["acls"] += [
        _acl("subscribePattern", topics.RESULTS_FILTER),
        _acl("unsubscribePattern", topics.RESULTS_FILTER),
        _acl("publishClientSend", f"{topics.ROOT}/devices/+/commands"),
        _acl("publishClientSend", topics.GALLERY_ANNOUNCE),
        _acl("subscribeLiteral", topics.GALLERY_ANNOUNCE),
        _acl("publishClientReceive", topics.GALLERY_ANNOUNCE),
        _acl("subscribeLiteral", topics.REPLIES_SHARED),
        _acl("unsubscribeLiteral", topics.REPLIES_SHARED),
        _acl("publishClientReceive", topics.REPLIES_FILTER),
    ]
    role["acls"] += admin_role()["acls"]
    return role


def admin_role() -> dict[str, Any]:
    """Changes to the rules at run time (``mosquitto_ctrl dynsec ...``) and nothing else."""
    return {
        "rolename": "dynsec-admin",
        "acls": [
            _acl("publishClientSend", "$CONTROL/dynamic-security/#"),
            _acl("publishClientReceive", "$CONTROL/dynamic-security/#"),
            _acl("subscribePattern", "$CONTROL/dynamic-security/#"),
        ],
    }


CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
CONTROL_RESPONSE = f"{CONTROL_TOPIC}/response"


def revoke_request(device_id: str) -> dict[str, Any]:
    """The control message that cuts a unit off: its account disabled (the plugin also drops its connection)
    and its role taken away, so that even a connection the broker still holds can publish and receive nothing.
    Undo with ``mosquitto_ctrl dynsec enableClient <id>`` and ``addClientRole <id> unit:<id>``."""
    check_device_id(device_id)
    return {
        "commands": [
            {"command": "disableClient", "username": device_id},
            {"command": "removeClientRole", "username": device_id, "rolename": f"unit:{device_id}"},
        ]
    }


def check_device_id(device_id: str) -> None:
    """A unit's identity: a valid device id, never one of the central accounts' names."""
    topics.check_device_id(device_id, "unit")
    if device_id in CENTRAL or device_id.startswith("edgeface-"):
        raise ConfigError(f"{device_id!r} is reserved for the central accounts (edgeface-*); choose another device id")


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS) -> dict[str, Any]:
    """The plugin's stored form of a password."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, 64)
    return {
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": iterations,
    }


def _client(
    username: str, roles: Iterable[str], *, password: str | None = None, clientid: str | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "username": username,
        "textname": username,
        "roles": [{"rolename": r, "priority": 0} for r in roles],
    }
    if password is not None:
        out.update(hash_password(password))
        # On the password listener the plugin itself binds the client id to the account.
        out["clientid"] = clientid or username
    return out


def build(
    units: Iterable[str],
    *,
    passwords: Mapping[str, str] | None = None,
    servers: Iterable[str] = ("edgeface-server",),
    ingest: Iterable[str] = ("edgeface-ingest",),
    group: str = "edgeface-ingest",
    admin_password: str | None = None,
) -> dict[str, Any]:
    """The plugin's configuration (``dynamic-security.json``) for these identities.

    ``units`` are device ids (certificate CNs); ``passwords`` gives password-listener units their
    password (the account's client id is then bound to its name). ``servers`` and ``ingest`` are the
    central certificate CNs. With ``admin_password`` an account ``dynsec-admin`` may change the rules
    at run time.
    """
    passwords = dict(passwords or {})
    unit_ids = sorted(set(units) | set(passwords))
    roles = [unit_role(u) for u in unit_ids] + [ingest_role(group), server_role(group)]
    clients = [_client(u, [f"unit:{u}"], password=passwords.get(u)) for u in unit_ids]
    clients += [_client(s, ["edgeface-server"]) for s in servers]
    clients += [_client(i, ["edgeface-ingest"]) for i in ingest]
    if admin_password is not None:
        roles.append(admin_role())
        clients.append(_client("dynsec-admin", ["dynsec-admin"], password=admin_password))
    names = [c["username"] for c in clients]
    if len(names) != len(set(names)):
        raise ConfigError("an identity is listed twice (units, servers and ingest accounts must differ)")
    return {
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": False,
        },
        "clients": clients,
        "groups": [],
        "roles": roles,
    }


__all__ = [
    "CENTRAL",
    "CONTROL_RESPONSE",
    "CONTROL_TOPIC",
    "build",
    "check_device_id",
    "hash_password",
    "ingest_role",
    "revoke_request",
    "server_role",
    "unit_role",
]
