"""The one call the pipeline makes per result: check it, encode it, store it in the outbox."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..outbox import Outbox, Priority
from . import payloads, topics


def enqueue_result(outbox: Outbox, doc: Mapping[str, Any], *, max_payload_bytes: int | None = None) -> str:
    """Store a result document (from :func:`payloads.result_payload`) for sending; returns its id.

    Durable when it returns. Raises :class:`~edgeface.errors.PayloadError` if the document breaks the
    contract, :class:`~edgeface.errors.OutboxFull` or :class:`~edgeface.errors.OutboxDiskFull` if it
    cannot be stored; in every case nothing was stored. Call ``publisher.notify()`` afterwards.
    """
    data = payloads.encode_result(doc, max_bytes=max_payload_bytes)
    outbox.put(doc["id"], topics.results_topic(doc["device_id"]), data, Priority.for_decision(doc["decision"]))
    return str(doc["id"])
