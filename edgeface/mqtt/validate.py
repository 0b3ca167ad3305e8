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

SUPPORTED = frozenset({
    "$schema", "$id", "$defs", "$ref", "title", "description",
    "type", "enum", "const", "properties", "required", "additionalProperties",
    "items", "minItems", "maxItems", "minLength", "maxLength", "pattern", "minimum", "maximum",
})

SCHEMAS = ("result", "status", "announce", "command")


@functools.cache
def load_schema(name: str, version: int = 1) -> dict[str, Any]:
    """The parsed schema file ``edgeface/schemas/<name>.v<version>.json``."""
    if name not in SCHEMAS:
        raise ValueError(f"unknown schema {name!r}; known: {', '.join(SCHEMAS)}")
    text = resources.files("edgeface").joinpath("schemas", f"{name}.v{version}.json").read_text("utf-8")
    return json.loads(text)


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
    return node


@functools.lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _equal(a: Any, b: Any) -> bool:
    """JSON equality: 1 == 1.0, but true != 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _check(value: Any, schema: dict[str, Any], root: dict[str, Any], path: str, errors: list[str],
           limit: int) -> None:
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
