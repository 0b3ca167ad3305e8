"""Benchmark runners (``edgeface bench ...``, commands in :mod:`edgeface.cli.bench`): each returns its
figures, which the command prints as a table and can write as JSON. Accuracy protocols live in
:mod:`edgeface.evaluation`."""

from __future__ import annotations

from ..errors import EdgefaceError


def require_harness(benchmark: str) -> None:
    """The broker benchmarks start Mosquitto through :mod:`edgeface.testing`, which only a source
    checkout has (the wheel leaves it out): say so instead of an ImportError."""
    try:
        import edgeface.testing  # noqa: F401
    except ModuleNotFoundError:
        raise EdgefaceError(
            f"`edgeface bench {benchmark}` starts a local broker with the test harness, which "
            "only a source checkout has: run it from a clone (pip install -e .)"
        ) from None
