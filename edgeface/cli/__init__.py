"""The ``edgeface`` command line.

Conventions: ``--help`` everywhere; ``--json`` where scripts consume the output (JSON Lines: one
object per line, in input order); progress bars on stderr for long work; logs on stderr, results on
stdout. Exit codes: 0 success, 1 failure (or some inputs failed), 2 usage or configuration error,
130 interrupted.
"""

from __future__ import annotations

import sys

import click

from .main import cli


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="edgeface", standalone_mode=True)
    except SystemExit as e:
        return int(e.code or 0)
    return 0


__all__ = ["cli", "main", "click"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
