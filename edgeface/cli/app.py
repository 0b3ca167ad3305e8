"""What every command receives: the validated configuration, and helpers for output and errors."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click

from ..config import Config
from ..errors import ConfigError, EdgefaceError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


@dataclass
class AppContext:
    config: Config
    config_path: str | None = None
    overrides: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)  # old names the configuration still uses (logged once)

    def with_overrides(self, **pairs: Any) -> Config:
        """Re-validate the configuration with command-flag values (``section.key`` -> value)."""
        from ..config import load_config

        extra = [f"{k}={v}" for k, v in pairs.items() if v is not None]
        if not extra:
            return self.config
        self.config = load_config(self.config_path, overrides=[*self.overrides, *extra], notices=[])
        return self.config


pass_app = click.make_pass_decorator(AppContext)


def emit_json(record: dict[str, Any]) -> None:
    """One JSON object per line on stdout, flushed so pipelines see it at once."""
    sys.stdout.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def write_secret(path: Any, secret: str) -> None:
    """Write a token or password to ``path`` readable by its owner only (0600 from the start, not chmod after)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")


def fail(error: EdgefaceError) -> click.exceptions.Exit:
    click.echo(f"edgeface: error: {error}", err=True)
    return click.exceptions.Exit(EXIT_USAGE if isinstance(error, ConfigError) else EXIT_FAILED)


def progress(items: list[Any], label: str) -> Any:
    """A progress bar on stderr when it is a terminal (never mixed into stdout results)."""
    show = sys.stderr.isatty() and len(items) > 1
    return click.progressbar(items, label=label, file=sys.stderr, show_pos=True) if show else _Plain(items)


class _Plain:
    def __init__(self, items: list[Any]) -> None:
        self.items = items

    def __enter__(self) -> list[Any]:
        return self.items

    def __exit__(self, *exc: object) -> None:
        return None


def human_bytes(n: float | None) -> str:
    """Sizes for people, the same in every command: ``812 B``, ``3.4 KiB``, ``1.2 MiB``."""
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
