"""Cases at the centre as retention sees them: the case tag a result carries, and which cases a person
closed (``case_closures``). A case is open until closed; retention keeps an open case's results whole and
counts a closed one's days from its closure (:mod:`.retention`). ``edgeface server close-case`` and
``reopen-case`` change it, each audited (``case.close``, ``case.reopen``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

from sqlalchemy import Connection, Select, case, delete, select

from ..errors import EdgefaceError
from . import audit
from .tables import case_closures, results

_CHUNK = 500


def case_tag(doc: Mapping[str, Any]) -> str | None:
    """The case/body tag a unit put on a result (``case``: an object with ``tag``, or a string), or None."""
    value = doc.get("case")
    if isinstance(value, Mapping):
        value = value.get("tag")
    return str(value) if value else None


_DECODER = json.JSONDecoder()


def payload_value(payload: str, key: str) -> Any:
    """A top-level value of a stored payload without decoding the rest (its crop is most of it); None when
    absent. ``"key":`` in JSON text is a key (a quote inside a string is escaped, and a string value is
    never followed by a colon), and the result schema the ingest checks has no other key ending in
    ``case`` or ``crop`` and those two only at the top level."""
    i = payload.find(f'"{key}":')
    if i >= 0:
        start = i + len(key) + 3
        while payload[start : start + 1].isspace():
            start += 1
        return _DECODER.raw_decode(payload, start)[0]
    return json.loads(payload).get(key) if f'"{key}"' in payload else None  # not written compactly


def case_tag_of(payload: str | None) -> str | None:
    """:func:`case_tag` of a stored payload's text."""
    return case_tag({"case": payload_value(payload, "case")}) if payload else None


def closed_cases(conn: Connection) -> dict[str, float]:
    """Closed cases: tag -> closure time."""
    return {
        str(r.tag): float(r.closed_at) for r in conn.execute(select(case_closures.c.tag, case_closures.c.closed_at))
    }


# The payload only of results that carry a case tag: the database tests the text, Python never sees the
# (crop-sized) payloads of the others.
CASE_PAYLOAD = case((results.c.payload.like('%"case"%'), results.c.payload), else_=None).label("case_payload")


def stream_rows(conn: Connection, q: Select[Any]) -> Iterator[Any]:
    """Rows a few hundred at a time (PostgreSQL: a server-side cursor), never every payload at once."""
    yield from conn.execute(q, execution_options={"yield_per": _CHUNK})


class CaseError(EdgefaceError):
    """A case cannot be closed or reopened as asked (the message says why)."""


def clean_tag(text: str) -> str:
    """A tag typed at the centre as units write them: spaces trimmed, runs of blanks made one."""
    tag = " ".join(text.split())
    if not tag or len(tag) > 128 or any(ord(c) < 32 or ord(c) == 127 for c in tag):
        raise CaseError("a case tag is 1 to 128 characters, without control characters")
    return tag


def tagged_results(conn: Connection, tag: str) -> int:
    """How many results carry case ``tag``."""
    q = select(CASE_PAYLOAD).where(results.c.payload.like('%"case"%'))
    return sum(1 for r in stream_rows(conn, q) if case_tag_of(r.case_payload) == tag)


def close_case(conn: Connection, tag: str, actor: str, note: str = "") -> int:
    """Mark a case closed (in the caller's write transaction, audited): its results' retention starts now.
    Returns how many results carry the tag (0: perhaps mistyped; the closure stands, reopen undoes it)."""
    tag = clean_tag(tag)
    if conn.execute(select(case_closures.c.tag).where(case_closures.c.tag == tag)).first() is not None:
        raise CaseError(f"case {tag!r} is already closed (reopen it first to close it again)")
    count = tagged_results(conn, tag)
    note = note.strip()[:2000]
    conn.execute(case_closures.insert().values(tag=tag, closed_at=time.time(), closed_by=actor, note=note))
    audit.append(conn, actor, "case.close", tag, {"note": note, "results": count})
    return count


def reopen_case(conn: Connection, tag: str, actor: str) -> None:
    """Open a closed case again (audited): its results are kept whole again."""
    tag = clean_tag(tag)
    if not conn.execute(delete(case_closures).where(case_closures.c.tag == tag)).rowcount:
        raise CaseError(f"case {tag!r} is not closed")
    audit.append(conn, actor, "case.reopen", tag, {})
