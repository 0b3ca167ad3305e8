"""One message over a short-lived, clean-start connection: the server's commands and broker control
requests, and a unit's last word after a wipe (its outbox is gone by then).

Never raises for a network problem: :func:`publish_once` and :func:`request` return what happened, so the
caller can record it (the server audits a command it could not send).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Any

from .link import LinkSettings, make_client


@dataclass(frozen=True)
class Sent:
    """What became of one message: ``ok``, else ``why`` not; ``response`` for :func:`request`."""

    ok: bool
    why: str = ""
    response: bytes | None = None


def request(
    settings: LinkSettings,
    topic: str,
    data: bytes,
    *,
    response_topic: str | None = None,
    retain: bool = False,
    timeout: float = 10.0,
) -> Sent:
    """Connect (clean start, no session kept), publish ``data`` at QoS 1 and wait for its acknowledgement;
    with ``response_topic``, subscribe to it first and also wait for the first message there."""
    settings = replace(settings, session_expiry_s=0)
    client = make_client(settings)
    connected, published, subscribed, answered = (threading.Event() for _ in range(4))
    got: dict[str, Any] = {}

    def on_connect(c: Any, u: Any, flags: Any, reason: Any, props: Any) -> None:
        got["connect"] = reason
        connected.set()

    def on_publish(c: Any, u: Any, mid: int, reason: Any, props: Any) -> None:
        got["publish"] = reason
        published.set()

    def on_subscribe(c: Any, u: Any, mid: int, reasons: Any, props: Any) -> None:
        got["subscribe"] = reasons[0] if reasons else None
        subscribed.set()

    def on_message(c: Any, u: Any, msg: Any) -> None:
        got.setdefault("response", bytes(msg.payload))
        answered.set()

    client.on_connect, client.on_publish = on_connect, on_publish
    client.on_subscribe, client.on_message = on_subscribe, on_message
    try:
        if settings.protocol == "mqtt5":
            client.connect(settings.host, settings.port, settings.keepalive_s, clean_start=True)
        else:
            client.connect(settings.host, settings.port, settings.keepalive_s)
        client.loop_start()
        if not connected.wait(timeout) or getattr(got.get("connect"), "is_failure", True):
            return Sent(False, f"the broker refused or did not answer the connection ({got.get('connect')})")
        if response_topic is not None:
            client.subscribe(response_topic, qos=1)
            if not subscribed.wait(timeout) or getattr(got.get("subscribe"), "is_failure", True):
                return Sent(False, f"the broker refused the subscription to {response_topic} ({got.get('subscribe')})")
        client.publish(topic, data, qos=1, retain=retain)
        if not published.wait(timeout):
            return Sent(False, "no acknowledgement from the broker")
        reason = got.get("publish")
        if reason is not None and getattr(reason, "is_failure", False):
            return Sent(False, f"the broker refused the message on {topic} ({reason}); check the broker rules")
        if response_topic is not None and not answered.wait(timeout):
            return Sent(False, f"no response on {response_topic} within {timeout:.0f} s")
        return Sent(True, "", got.get("response"))
    except OSError as e:
        return Sent(False, f"cannot reach the broker: {e}")
    finally:
        try:
            client.disconnect()
        finally:
            client.loop_stop()


def publish_once(settings: LinkSettings, topic: str, data: bytes, *, timeout: float = 10.0) -> Sent:
    """:func:`request` without a response."""
    return request(settings, topic, data, timeout=timeout)


__all__ = ["Sent", "publish_once", "request"]
