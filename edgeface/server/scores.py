"""Which score a result was decided on, read from its stored payload, for the review pages and the export.

The ingest keeps each result's payload whole (``results.payload``), so fields units added later
(``score_space``, candidates' ``normalised``, ``frames_fused``) need no column: they are read from it here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from .tables import results


@dataclass(frozen=True)
class Scores:
    """How a result was scored, from its payload: which score the decision used, its threshold, the top
    candidate's normalised score and how many frames were fused. Units before normalisation and track
    fusion send neither ``score_space`` nor ``frames_fused``: those results were decided on raw cosine."""

    space: str  # "cosine" or "normalised": what the threshold and the candidates' order are on
    threshold: float | None
    top_normalised: float | None
    frames_fused: int | None  # None: not sent (a unit before track fusion)

    @property
    def normalised(self) -> bool:
        """The decision, its threshold and the candidates' order are on the normalised score."""
        return self.space == "normalised"

    @classmethod
    def of(cls, doc: dict[str, Any]) -> Scores:
        cands = doc.get("candidates") or []
        top = cands[0].get("normalised") if cands else None
        return cls(doc.get("score_space") or "cosine", doc.get("threshold"), top, doc.get("frames_fused"))


def payload_docs(conn: Connection, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The stored payloads of these results, parsed (read in chunks: the ingest keeps each one whole)."""
    out: dict[str, dict[str, Any]] = {}
    for chunk in range(0, len(ids), 500):
        part = ids[chunk : chunk + 500]
        for rid, payload in conn.execute(select(results.c.id, results.c.payload).where(results.c.id.in_(part))):
            out[rid] = json.loads(payload)
    return out
