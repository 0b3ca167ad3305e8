"""Structured logging: one event per line, as JSON (for machines) or key=value text (for people).

Usage::

    from edgeface.logs import get_logger
    log = get_logger(__name__)
    log.info("detect.done", image="a.jpg", faces=2)

Events are short dotted names; fields are keyword arguments. Configure once at start-up with
:func:`configure_logging` (the CLI does this from the ``[logging]`` config section).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

_FIELDS = "edgeface_fields"


class EventLogger:
    """A thin wrapper over :class:`logging.Logger` that takes an event name plus fields."""

    __slots__ = ("_logger",)

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def _emit(self, level: int, event: str, fields: dict[str, Any]) -> None:
        if self._logger.isEnabledFor(level):
            exc_info = fields.pop("exc_info", None)
            self._logger.log(level, event, extra={_FIELDS: fields}, exc_info=exc_info)

    def debug(self, event: str, **fields: Any) -> None:
        self._emit(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit(logging.WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit(logging.ERROR, event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        fields.setdefault("exc_info", True)
        self._emit(logging.ERROR, event, fields)


def get_logger(name: str) -> EventLogger:
    return EventLogger(logging.getLogger(name))


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        try:
            return value.item()
        except (TypeError, ValueError):
            pass
    return str(value)


def _timestamp(record: logging.LogRecord) -> str:
    t = time.gmtime(record.created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z"


class JsonFormatter(logging.Formatter):
    """``{"ts": ..., "level": ..., "logger": ..., "event": ..., **fields}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in getattr(record, _FIELDS, {}).items():
            out[key] = _jsonable(value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info).replace("\n", "\\n")
        return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """``ts level event key=value ...`` on one line (values with spaces are quoted)."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), record.levelname.lower(), record.getMessage()]
        for key, value in getattr(record, _FIELDS, {}).items():
            text = json.dumps(_jsonable(value), ensure_ascii=False) if not isinstance(value, str) else value
            if isinstance(value, str) and (not value or any(c in value for c in ' ="\n')):
                text = json.dumps(value, ensure_ascii=False)
            parts.append(f"{key}={text}")
        line = " ".join(parts)
        if record.exc_info:
            line += " exception=" + json.dumps(self.formatException(record.exc_info))
        return line


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]  # generic only in typeshed, not at run time
    """edgeface's one handler on the root logger (replaced, not stacked, when logging is configured again)."""


def configure_logging(level: str = "info", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Route all edgeface (and third-party) logging through one handler with the chosen format."""
    handler = _Handler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, _Handler):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Libraries' progress chatter (Alembic's "Context impl SQLiteImpl", "Will assume transactional DDL",
    # one line per migration) is not news to an operator: their warnings still show, the rest at debug.
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING)


QUIET_LIBRARIES = ("alembic", "waitress", "urllib3", "PIL")
