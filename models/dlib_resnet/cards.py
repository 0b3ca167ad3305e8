"""Keep the machine-derived fields of a model card in step with the model file it describes.

The cards are written by hand (descriptions, alignment template, thresholds are people's work and
are never overwritten); conversion only rewrites the ``key = value`` lines listed here, in place,
keeping comments and everything else.
"""

from __future__ import annotations

import json
import re
from pathlib import Path


def _format(value: object) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def update(path: Path, values: dict[str, object]) -> None:
    """Set ``section.key`` (or top-level ``key``) lines in a TOML card; each key must already exist."""
    lines = path.read_text(encoding="utf-8").split("\n")
    section = ""
    done: set[str] = set()
    in_string = False
    for i, line in enumerate(lines):
        if line.count('"""') % 2:  # a multi-line string opens or closes here
            in_string = not in_string
            continue
        if in_string:
            continue
        head = re.match(r"^\s*\[([^\]]+)\]\s*(#.*)?$", line)
        if head:
            section = head.group(1).strip()
            continue
        m = re.match(r"^(\s*)([A-Za-z0-9_]+)(\s*=\s*)(\"[^\"]*\"|[^#]*?)(\s*#.*)?$", line)
        if not m:
            continue
        full = f"{section}.{m.group(2)}" if section else m.group(2)
        if full in values:
            lines[i] = f"{m.group(1)}{m.group(2)}{m.group(3)}{_format(values[full])}{m.group(5) or ''}"
            done.add(full)
    missing = set(values) - done
    if missing:
        raise KeyError(f"{path}: no line for {', '.join(sorted(missing))}; add it to the card by hand first")
    path.write_text("\n".join(lines), encoding="utf-8")
