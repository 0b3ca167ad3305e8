"""Validate payloads against the published JSON Schemas without a JSON Schema library at run time.

The schema files in ``edgeface/schemas/`` are the one source of truth. This module interprets the
subset of JSON Schema (draft 2020-12) they use, so field units need no extra dependency; the tests
check that it agrees with the ``jsonschema`` package on generated payloads and that the schema files
use nothing outside :data:`SUPPORTED`.
"""

from __future__ import annotations

import functools
import json
import math
import re
from importlib import resources
from typing import Any

from ..errors import PayloadError
from .timestamps import parse_timestamp

SUPPORTED = frozenset(
    {
        "$schema",
        "$id",
        "$defs",
        "$ref",
        "title",
        "description",
        "type",
        "enum",
        "const",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
        "format",
    }
)

# Formats asserted at run time (JSON Schema only annotates them by default; the tests check against
# jsonschema with its format checker on). A pattern alone lets "2025-13-45T99:99:99Z" through.
FORMATS = ("date-time",)

SCHEMAS = ("result", "status", "announce", "command", "reply")


@functools.cache
def load_schema(name: str, version: int = 1) -> dict[str, Any]:
    """The parsed schema file ``edgeface/schemas/<name>.v<version>.json``."""
    if name not in SCHEMAS:
        raise ValueError(f"unknown schema {name!r}; known: {', '.join(SCHEMAS)}")
    text = resources.files("edgeface").joinpath("schemas").joinpath(f"{name}.v{version}.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def schema_errors(doc: Any, name: str, version: int = 1, *, limit: int = 10) -> list[str]:
    """Every way ``doc`` breaks the schema (up to ``limit``), as 'path: problem' strings."""
    schema = load_schema(name, version)
    errors: list[str] = []
    _check(doc, schema, schema, "$", errors, limit)
    return errors


def validate(doc: Any, name: str, version: int = 1) -> None:
    """Raise :class:`PayloadError` listing the problems when ``doc`` does not follow the schema."""
    errors = schema_errors(doc, name, version)
    if errors:
        raise PayloadError(f"{name} payload does not follow {name}.v{version}.json: " + "; ".join(errors))


def _is_type(value: Any, tp: str) -> bool:
    if tp == "null":
        return value is None
    if tp == "boolean":
        return isinstance(value, bool)
    if tp == "object":
        return isinstance(value, dict)
    if tp == "array":
        return isinstance(value, list)
    if tp == "string":
        return isinstance(value, str)
    if isinstance(value, bool):
        return False
    if tp == "number":
        return isinstance(value, (int, float)) and not (isinstance(value, float) and not math.isfinite(value))
    if tp == "integer":
        return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value) and value.is_integer())
    raise ValueError(f"schema uses unknown type {tp!r}")


def _resolve(ref: str, root: dict[str, Any]) -> dict[str, Any]:
    if not ref.startswith("#/"):
        raise ValueError(f"only local $ref are supported, not {ref!r}")
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part]
    resolved: dict[str, Any] = node
    return resolved


@functools.lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    """``pattern`` compiled with ECMA-262 meaning, as JSON Schema defines it.

    Python's ``$`` also matches before a trailing newline (``"id\\n"`` would pass ``^...$``), and its
    ``\\d``/``\\w`` match non-ASCII digits and letters; ECMA's do neither. So every ``$`` outside a
    character class becomes ``\\Z`` and the pattern is compiled ASCII-only.
    """
    out, i, in_class = [], 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
        elif ch == "$":
            ch = r"\Z"
        out.append(ch)
        i += 1
    return re.compile("".join(out), re.ASCII)


def _format_error(value: str, fmt: str) -> str | None:
    if fmt == "date-time":
        try:
            parse_timestamp(value)
        except (ValueError, OverflowError) as e:
            return str(e)
        return None
    raise ValueError(f"schema uses format {fmt!r}; interpreted: {', '.join(FORMATS)}")


def text_problems(doc: Any, path: str = "$", *, limit: int = 10) -> list[str]:
    """Strings a database cannot store faithfully: NUL and other C0 control characters, lone UTF-16
    surrogates (legal in JSON text, not encodable as UTF-8). Object keys are checked too."""
    problems: list[str] = []
    stack = [(path, doc)]
    while stack and len(problems) < limit:
        where, node = stack.pop()
        if isinstance(node, str):
            if _BAD_TEXT.search(node):
                problems.append(f"{where}: contains a control character or an unpaired surrogate")
        elif isinstance(node, dict):
            for k, v in node.items():
                if isinstance(k, str) and _BAD_TEXT.search(k):
                    problems.append(f"{where}: a key contains a control character or an unpaired surrogate")
                stack.append((f"{where}.{str(k)[:32]}", v))
        elif isinstance(node, list):
            stack.extend((f"{where}[{i}]", v) for i, v in enumerate(node))
    return problems


_BAD_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def _equal(a: Any, b: Any) -> bool:
    """JSON equality: 1 == 1.0, but true != 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _check(value: Any, schema: dict[str, Any], root: dict[str, Any], path: str, errors: list[str], limit: int) -> None:
    if len(errors) >= limit:
        return
    if "$ref" in schema:
        _check(value, _resolve(schema["$ref"], root), root, path, errors, limit)
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(value, t) for t in types):
            errors.append(f"{path}: expected {' or '.join(types)}, got {_describe(value)}")
            return
    if "const" in schema and not _equal(value, schema["const"]):
        errors.append(f"{path}: must be {json.dumps(schema['const'])}")
    if "enum" in schema and not any(_equal(value, e) for e in schema["enum"]):
        errors.append(f"{path}: must be one of {', '.join(json.dumps(e) for e in schema['enum'])}")
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(f"{path}: shorter than {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{path}: longer than {schema['maxLength']} characters")
        if "pattern" in schema and not _regex(schema["pattern"]).search(value):
            errors.append(f"{path}: does not match {schema['pattern']}")
        elif "format" in schema:
            problem = _format_error(value, schema["format"])
            if problem:
                errors.append(f"{path}: not a valid {schema['format']}: {problem[:120]}")
    elif _is_type(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{path}: less than {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{path}: more than {schema['maximum']}")
    elif isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append(f"{path}: fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(f"{path}: more than {schema['maxItems']} items")
            return  # do not walk an oversized array item by item
        if "items" in schema:
            for i, item in enumerate(value):
                _check(item, schema["items"], root, f"{path}[{i}]", errors, limit)
    elif isinstance(value, dict):
        for key in schema.get("required", ()):
            if key not in value:
                errors.append(f"{path}: missing required {key!r}")
        props = schema.get("properties", {})
        for key, item in value.items():
            if key in props:
                _check(item, props[key], root, f"{path}.{key}", errors, limit)
            elif schema.get("additionalProperties", True) is False:
                errors.append(f"{path}: unexpected property {str(key)[:64]!r}")
    del errors[limit:]


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number" if math.isfinite(value) else "a non-finite number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
