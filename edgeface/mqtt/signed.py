"""Signed commands: what the central key signs, and the checks a unit makes before it acts on one.

A command that can take a unit out of service (``wipe``, ``lock``, ``unlock``, ``revoke``) must carry the
unit's ``device_id``, a per-unit ``seq`` and an ``expires_at``, and a ``signature`` made with the central
server's Ed25519 key (the key that signs galleries, :mod:`edgeface.gallery.signing`) over the canonical JSON
of every other field. The broker's rules already let only the server publish on a unit's commands topic;
the signature is what still holds when the broker, or a central account, is not what it should be.

:func:`check` runs the unit's checks in a fixed order and raises :class:`CommandRefused` with a short
reason code (``unsigned``, ``bad_signature``, ``wrong_target``, ``expired``, ``replay``, ``malformed``)
that the unit reports back to the centre, where it is audited.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import BundleRejected, EdgefaceError
from ..gallery import signing
from . import timestamps

PRIVILEGED = frozenset({"wipe", "lock", "unlock", "revoke"})  # refused unless signed and verified


class CommandRefused(EdgefaceError):
    """A command failed one of the unit's checks; ``reason`` is the code reported to the centre."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def canonical(doc: Mapping[str, Any]) -> bytes:
    """The bytes that are signed: every field but ``signature``, keys sorted, no spaces, UTF-8."""
    body = {k: v for k, v in doc.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def sign(doc: Mapping[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """``doc`` with its ``signature`` field (any earlier one replaced)."""
    out = {k: v for k, v in doc.items() if k != "signature"}
    out["signature"] = json.loads(signing.sign(canonical(out), key))
    return out


def check(
    doc: Mapping[str, Any],
    *,
    device_id: str,
    trusted: Sequence[Ed25519PublicKey],
    highest_seq: int,
    now: float | None = None,
) -> int:
    """Verify a command before acting on it; returns its ``seq``.

    In this order: signed at all, signed by a trusted key, addressed to ``device_id``, not expired, and
    ``seq`` above ``highest_seq`` (the highest this unit ever accepted, kept across restarts).
    """
    cid = doc.get("id", "?")
    sig = doc.get("signature")
    if sig is None:
        raise CommandRefused("unsigned", f"command {cid} ({doc.get('command')}) is not signed; refusing it")
    if not trusted:
        raise CommandRefused(
            "bad_signature",
            f"command {cid}: no trusted central key is configured (commands.trusted_keys or gallery.trusted_keys)",
        )
    try:
        signing.verify(canonical(doc), json.dumps(sig).encode(), trusted, what=f"command {cid}")
    except BundleRejected as e:
        raise CommandRefused("bad_signature", f"command {cid}: signature does not verify with a trusted key") from e
    target, seq, expires = doc.get("device_id"), doc.get("seq"), doc.get("expires_at")
    if target != device_id:
        raise CommandRefused(
            "wrong_target", f"command {cid} is addressed to {target!r}, not to this unit ({device_id})"
        )
    if not isinstance(seq, int) or isinstance(seq, bool) or expires is None:
        raise CommandRefused("malformed", f"command {cid} is signed but has no seq or no expires_at")
    now = time.time() if now is None else now
    try:
        expires_ts = timestamps.parse_timestamp(str(expires))
    except (ValueError, TypeError) as e:
        raise CommandRefused("malformed", f"command {cid}: expires_at {expires!r} is not a timestamp") from e
    if expires_ts < now:
        raise CommandRefused("expired", f"command {cid} expired at {expires} ({now - expires_ts:.0f} s ago)")
    if seq <= highest_seq:
        raise CommandRefused(
            "replay", f"command {cid} has seq {seq}, not above {highest_seq} (the highest accepted): a replay"
        )
    return seq


def reply_payload(
    *,
    device_id: str,
    command: Mapping[str, Any],
    outcome: str,
    reason: str = "",
    detail: str = "",
    report: Mapping[str, Any] | None = None,
    ts: float | None = None,
) -> dict[str, Any]:
    """A unit's reply to ``command`` (reply.v1.json): ``applied``, ``refused`` or ``failed``, with the reason."""
    from ..outbox.uuid7 import new_id

    seq = command.get("seq")
    doc: dict[str, Any] = {
        "schema_version": 1,
        "id": new_id(),
        "device_id": device_id,
        "command_id": str(command.get("id", ""))[:64],
        "command": str(command.get("command", ""))[:32],
        "seq": seq if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0 else None,
        "outcome": outcome,
        "reason": reason,
        "detail": detail[:2000],
        "ts": timestamps.utc_timestamp(ts),
    }
    if report is not None:
        doc["report"] = dict(report)
    return doc


__all__ = ["PRIVILEGED", "CommandRefused", "canonical", "check", "reply_payload", "sign"]
