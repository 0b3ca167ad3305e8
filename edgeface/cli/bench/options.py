"""Options and helpers shared by the ``edgeface bench`` commands."""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import click

from ...bench import report
from ..app import progress


def ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected comma-separated integers, e.g. 1,2") from None


def wrap(label: str) -> Callable[[Iterable[Any]], Iterator[Any]]:
    """A progress-bar wrapper for the benchmark runners' item loops."""

    def wrapped(items: Iterable[Any]) -> Iterator[Any]:
        with progress(list(items), label) as bar:
            yield from bar

    return wrapped


lfw_option = click.option(
    "--lfw",
    "lfw_path",
    type=click.Path(file_okay=False, path_type=Path),
    help="LFW folder with images/ and pairs.txt (default: ../shared/data/lfw or $EDGEFACE_LFW).",
)


def json_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--json``: the figures as one JSON object on stdout (the tables go to stderr), as ``--json`` means in
    every edgeface command; ``--out FILE``: also write them to FILE. The command receives ``json_path``."""

    @click.option(
        "--out",
        "json_path",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Also write the figures to this JSON file.",
    )
    @click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print the figures as one JSON object on stdout (the tables go to stderr).",
    )
    @functools.wraps(command)
    def wrapper(*args: Any, as_json: bool, **kwargs: Any) -> Any:
        if not as_json:
            return command(*args, **kwargs)
        with report.figures_to(sys.stdout), contextlib.redirect_stdout(sys.stderr):
            return command(*args, **kwargs)

    return wrapper
