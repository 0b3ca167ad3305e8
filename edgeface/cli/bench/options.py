"""Options and helpers shared by the ``edgeface bench`` commands."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import click

from ..app import progress


def ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected comma-separated integers, e.g. 1,2") from None


def wrap(label: str) -> Callable[[Iterable[Any]], Iterator[Any]]:
    """A progress-bar wrapper for the benchmark runners' item loops."""

    def wrapped(items: Iterable[Any]) -> Iterator[Any]:
        with progress(items, label) as bar:
            yield from bar

    return wrapped


lfw_option = click.option("--lfw", "lfw_path", type=click.Path(file_okay=False, path_type=Path),
                          help="LFW folder with images/ and pairs.txt (default: ../shared/data/lfw or $EDGEFACE_LFW).")
json_option = click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
                           help="Also write the figures to this JSON file.")
