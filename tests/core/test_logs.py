from __future__ import annotations

import io
import json
import logging

from edgeface.logs import configure_logging, get_logger


def test_json_lines_one_event_per_line() -> None:
    buf = io.StringIO()
    configure_logging("debug", "json", buf)
    log = get_logger("edgeface.test")
    log.info("thing.done", path="a b.jpg", n=3, ratio=0.5)
    log.warning("multi.line", text="one\ntwo")
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2
    rec = json.loads(lines[0])
    assert rec["event"] == "thing.done" and rec["n"] == 3 and rec["path"] == "a b.jpg" and rec["level"] == "info"
    assert json.loads(lines[1])["text"] == "one\ntwo"


def test_text_format_quotes_values_with_spaces() -> None:
    buf = io.StringIO()
    configure_logging("info", "text", buf)
    get_logger("x").info("e", path="a b", ok=True)
    get_logger("x").debug("hidden")
    out = buf.getvalue()
    assert out.count("\n") == 1 and 'path="a b"' in out and "ok=true" in out


def test_exceptions_stay_on_one_line() -> None:
    buf = io.StringIO()
    configure_logging("info", "json", buf)
    try:
        raise ValueError("boom")
    except ValueError:
        get_logger("x").exception("failed")
    lines = buf.getvalue().splitlines()
    assert len(lines) == 1 and "ValueError: boom" in json.loads(lines[0])["exception"]


def test_library_chatter_is_quiet_unless_debugging() -> None:
    """Alembic printed ~10 INFO lines on every server command; their warnings still come through."""
    buf = io.StringIO()
    configure_logging("info", "text", buf)
    logging.getLogger("alembic.runtime.migration").info("Context impl SQLiteImpl.")
    logging.getLogger("alembic.runtime.migration").warning("something odd")
    get_logger("edgeface.test").info("ours")
    text = buf.getvalue()
    assert "Context impl" not in text and "something odd" in text and "ours" in text
    configure_logging("debug", "text", buf)
    logging.getLogger("alembic.runtime.migration").info("Running upgrade")
    assert "Running upgrade" in buf.getvalue()
