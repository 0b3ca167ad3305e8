"""Loading: built-in defaults < TOML file < environment < ``--set``, each value validated on the way in.

Old names still load: a flat section that is now a nested one (``[capture_folder]`` ->
``[capture.folder]``), in a file, an environment variable or ``--set``, and ``""`` for an optional
setting that is now left out. Each becomes a *notice* that says what to rename; ``load_config`` logs
them (event ``config.migrate``) unless the caller collects them (``notices=[]``), as the CLI does so that
``edgeface config check`` can report them.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..logs import get_logger
from .coerce import coerce, from_text
from .schema import RENAMED_SECTIONS, Config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

ENV_PREFIX = "EDGEFACE_"
ENV_CONFIG = "EDGEFACE_CONFIG"

log = get_logger("edgeface.config")

Tree = dict[str, Any]


@dataclass(frozen=True)
class _Source:
    name: str  # how messages name it: the file's path, "environment" or "command line"
    base_dir: Path | None = None  # relative paths are relative to the file's folder
    from_text: bool = False  # values are strings to parse (environment, command line)


def load_config(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Sequence[str] = (),
    notices: list[str] | None = None,
) -> Config:
    """Build the configuration from defaults, an optional TOML file, the environment and overrides.

    ``overrides`` are ``section.key=value`` strings (what ``--set`` collects), later ones winning.
    Raises :class:`ConfigError` naming the offending key on any unknown or invalid value. Old names
    are read into their new place; what to rename goes to ``notices`` if given, else to the log.
    """
    env = os.environ if env is None else env
    if path is None and env.get(ENV_CONFIG):
        path = env[ENV_CONFIG]
    notes: list[str] = []
    values: Tree = {}
    if path is not None:
        p = Path(path).expanduser()
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(
                f"config file {p} does not exist; create it with `edgeface config defaults > {p}`"
            ) from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"config file {p} cannot be read: {e}") from e
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {p} is not valid TOML: {e}") from e
        source = _Source(str(p), base_dir=p.resolve().parent)
        _apply(values, Config, _file_tree(data, source.name, notes), source, notes)
    _apply(values, Config, _env_tree(env, notes), _Source("environment", from_text=True), notes)
    _apply(values, Config, _cli_tree(overrides, notes), _Source("command line", from_text=True), notes)
    config = _build(Config, values)
    unique = list(dict.fromkeys(notes))
    if notices is None:
        log_notices(unique)
    else:
        notices.extend(unique)
    return config


def log_notices(notices: Sequence[str]) -> None:
    """Log what an old configuration should rename (one warning each, event ``config.migrate``)."""
    for note in notices:
        log.warning("config.migrate", what=note)


# -- the three sources, as trees of raw values under today's names -----------------------------------


def _new_path(parts: list[str]) -> list[str]:
    """``["capture_folder", "path"]`` -> ``["capture", "folder", "path"]``; other names unchanged."""
    new = RENAMED_SECTIONS.get(parts[0])
    return [*new.split("."), *parts[1:]] if new else parts


def _put(tree: Tree, path: list[str], value: Any, source: str, *, replace: bool, keep: str) -> None:
    """Set ``tree[a][b]...[z] = value``, copying the tables on the way (the parsed file stays as read)."""
    node = tree
    for i, part in enumerate(path[:-1]):
        child = node.get(part, {})
        if not isinstance(child, Mapping):
            raise ConfigError(
                f"{'.'.join(path[: i + 1])} (from {source}) is a setting; {'.'.join(path)} cannot be set under it"
            )
        node[part] = dict(child)
        node = node[part]
    if path[-1] in node and not replace:
        raise ConfigError(
            f"{'.'.join(path)} is given twice (from {source}), under its old and its new name; keep {keep}"
        )
    node[path[-1]] = value


def _file_tree(data: Mapping[str, Any], source: str, notes: list[str]) -> Tree:
    tree: Tree = dict(data)
    for old, new in RENAMED_SECTIONS.items():
        if old not in tree:
            continue
        table = tree.pop(old)
        if not isinstance(table, Mapping):
            raise ConfigError(f"[{old}] (from {source}) must be a table of settings")
        for key, value in table.items():
            notes.append(f"{old}.{key} is now {new}.{key}; rename [{old}] to [{new}]")
            _put(tree, [*new.split("."), key], value, source, replace=False, keep=f"[{new}]")
    return tree


def _env_tree(env: Mapping[str, str], notes: list[str]) -> Tree:
    """``EDGEFACE_<SECTION>__<KEY>=value`` (``__`` between levels: ``EDGEFACE_CAPTURE__FOLDER__PATH``)."""
    tree: Tree = {}
    for name, value in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or name == ENV_CONFIG or "__" not in name:
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        new = _new_path(parts)
        new_name = ENV_PREFIX + "__".join(new).upper()
        if new != parts:
            notes.append(f"{'.'.join(parts)} is now {'.'.join(new)}; rename {name} to {new_name}")
        _put(tree, new, value, "environment", replace=False, keep=new_name)
    return tree


def _cli_tree(pairs: Sequence[str], notes: list[str]) -> Tree:
    """``section.key=value`` (``capture.folder.path=...`` for a nested section); later ones win."""
    tree: Tree = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) < 2 or not all(parts):
            raise ConfigError(f"--set {pair!r}: expected section.key=value, e.g. --set detect.min_score=0.6")
        new = _new_path(parts)
        if new != parts:
            notes.append(f"{'.'.join(parts)} is now {'.'.join(new)}; write --set {'.'.join(new)}=...")
        _put(tree, new, value, "command line", replace=True, keep="")
    return tree


# -- validation against the sections, and building them ---------------------------------------------


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _apply(
    values: Tree, cls: type, raw: Mapping[str, Any], source: _Source, notes: list[str], prefix: tuple[str, ...] = ()
) -> None:
    """Check ``raw`` against section ``cls`` and store typed values in ``values`` (same shape)."""
    fields_ = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    here = ".".join(prefix)
    for key, value in raw.items():
        full = ".".join((*prefix, key))
        if key not in fields_:
            if not prefix:
                raise ConfigError(
                    f"unknown config section [{key}] (from {source.name}); known sections: "
                    + ", ".join(sorted(fields_))
                )
            raise ConfigError(
                f"unknown setting {full} (from {source.name}); settings in [{here}]: " + ", ".join(sorted(fields_))
            )
        tp = hints[key]
        if _is_section(tp):
            if not isinstance(value, Mapping):
                raise ConfigError(f"[{full}] (from {source.name}) must be a table of settings")
            _apply(values.setdefault(key, {}), tp, value, source, notes, (*prefix, key))
            continue
        if source.from_text and isinstance(value, str):
            value = from_text(value, tp)
        values[key] = coerce(value, tp, full, source.name, source.base_dir, fields_[key].metadata, notes)


T = typing.TypeVar("T")


def _build(cls: type[T], values: Mapping[str, Any]) -> T:
    hints = typing.get_type_hints(cls)
    kwargs = {name: _build(hints[name], v) if _is_section(hints[name]) else v for name, v in values.items()}
    return cls(**kwargs)
