"""Raw values (TOML, environment, command line) to typed settings, with messages that name the key.

Hand-written on purpose, and kept this small. The sections are stdlib frozen dataclasses read with
``tomllib``, so a field unit carries no validation library (pydantic, say, is a compiled wheel with its
own release cadence, for what is here about 150 lines). The types in use are few: ``bool``, ``int``,
``float``, ``str``, ``Path``, ``Literal[...]``, ``X | None``, ``tuple[X, ...]``, ``dict[str, str]``.
And the messages are part of the contract (tests pin them): each names the key, where the value came
from and what is allowed, e.g. ``runtime.backend = 'tpu' (from command line) is not valid: expected one
of 'cpu', 'edgetpu', ...``. A section that declares a type not listed here fails loudly at start-up.
"""

from __future__ import annotations

import sys
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


def optional_inner(tp: Any) -> Any | None:
    """``X`` for ``X | None``; None for any other type."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return None


def type_text(tp: Any) -> str:
    """What a value of ``tp`` looks like, in words (for messages and ``config defaults``)."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    inner = optional_inner(tp)
    if inner is not None:
        return type_text(inner) + ", optional"
    if origin is tuple:
        return f"a list of {type_text(typing.get_args(tp)[0])}"
    if origin is dict:
        return "a table of strings"
    words = {bool: "true or false", int: "an integer", float: "a number", str: "a string", Path: "a path"}
    return words.get(tp, str(tp))


def from_text(text: str, tp: Any) -> Any:
    """Parse an environment or command-line string, as TOML where the type is structured.

    An empty string leaves an optional setting unset (there is no other way to say so on a command line).
    """
    origin = typing.get_origin(tp)
    if tp in (str, Path) or origin is Literal:
        return text
    inner = optional_inner(tp)
    if inner is not None:
        return None if text == "" else from_text(text, inner)
    if tp is bool:
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        return text
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def coerce(
    value: Any, tp: Any, key: str, source: str, base_dir: Path | None, meta: Mapping[str, Any], notes: list[str]
) -> Any:
    """``value`` as a ``tp``, or :class:`ConfigError` naming ``key``, ``source`` and what is allowed.

    ``notes`` collects what an old file still says the old way (``""`` for an unset optional setting).
    """

    def fail(extra: str = "") -> ConfigError:
        return ConfigError(f"{key} = {value!r} (from {source}) is not valid: expected {type_text(tp)}{extra}.")

    inner = optional_inner(tp)
    if inner is not None:
        if value is None:
            return None
        if value == "" and inner is not str:
            unset = meta.get("unset") or "its default"
            notes.append(
                f'{key} = "" (from {source}) leaves it unset ({unset}), but "" no longer means unset: '
                f"delete the line, or comment it out"
            )
            return None
        return coerce(value, inner, key, source, base_dir, meta, notes)
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise fail()
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise fail()
        item = typing.get_args(tp)[0]
        return tuple(coerce(v, item, key, source, base_dir, {}, notes) for v in value)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise fail()
        return {str(k): str(v) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise fail()
        return value
    if tp is str:
        if not isinstance(value, str):
            raise fail()
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise fail()
        p = Path(value).expanduser()
        return base_dir / p if base_dir is not None and not p.is_absolute() else p
    out: int | float
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail()
        out = value
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail()
        out = float(value)
    else:  # pragma: no cover - a section declared a type this loader does not know
        raise TypeError(f"unsupported config type {tp!r} for {key}")
    lo, hi = meta.get("min"), meta.get("max")
    if (lo is not None and out < lo) or (hi is not None and out > hi):
        raise fail(f" in [{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]")
    return out
