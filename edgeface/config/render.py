"""The configuration written out: a documented TOML file (``config defaults``, ``config show``) or a
plain dict (``--json``)."""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .coerce import type_text
from .schema import Config


def to_toml(config: Config, *, docs: bool = True) -> str:
    """The configuration as a TOML document that loads back, each setting preceded by its documentation.

    An optional setting that is unset is written commented out, with what leaving it unset means.
    """
    lines: list[str] = []
    _section(config, (), lines, docs)
    return "\n".join(lines)


def _section(obj: Any, prefix: tuple[str, ...], lines: list[str], docs: bool) -> None:
    cls = type(obj)
    hints = typing.get_type_hints(cls)
    fields_ = dataclasses.fields(cls)
    if prefix:
        if docs and cls.__doc__:
            lines.extend(f"# {line.strip()}".rstrip() for line in cls.__doc__.strip().splitlines())
        lines.append(f"[{'.'.join(prefix)}]")
        for f in fields_:
            if f.metadata.get("section"):
                continue
            value = getattr(obj, f.name)
            if docs:
                lines.append(f"# {f.metadata.get('doc', '')} ({type_text(hints[f.name])})")
            if value is None:
                lines.append(f"# {f.name} =   (unset: {f.metadata.get('unset')})")
            else:
                lines.append(f"{f.name} = {toml_value(value)}")
        lines.append("")
    for f in fields_:
        if f.metadata.get("section") or not prefix:
            _section(getattr(obj, f.name), (*prefix, f.name), lines, docs)


def toml_value(value: Any) -> str:
    """One value in TOML syntax."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):  # a JSON string is a TOML basic string, but for DEL, which TOML wants escaped
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} as TOML")


def as_dict(config: Config) -> dict[str, Any]:
    """Plain nested dict (paths as strings, lists for tuples) for ``--json`` output and logs."""
    out = _plain(config)
    assert isinstance(out, dict)
    return out


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value
