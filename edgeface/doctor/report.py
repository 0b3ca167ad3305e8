"""What a check found, and how a list of them becomes lines, JSON and an exit status.

Statuses: ``ok``; ``warn`` (the unit works, but something needs a look: a stale gallery, a clock
that no time server confirmed); ``fail`` (the unit cannot do its job: a tampered model, no gallery, a
broker that refuses it); ``skip`` (not applicable here: no broker configured, a folder instead of a
camera). Exit status: 0 when nothing failed or warned, 1 when a check failed, 4 when some warned and
none failed (2 stays the configuration error of every command).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["ok", "warn", "fail", "skip"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_WARNINGS = 4


@dataclass(frozen=True)
class Check:
    """One line of the report: what was checked, its status, a one-line summary and what to do about it."""

    name: str  # e.g. "python", "model.embedder", "broker"
    status: Status
    summary: str
    advice: str = ""  # for warn and fail: what to do
    detail: dict[str, Any] = field(default_factory=dict)  # the figures behind the summary (JSON only)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "status": self.status, "summary": self.summary}
        if self.advice:
            out["advice"] = self.advice
        if self.detail:
            out["detail"] = self.detail
        return out


def exit_status(checks: Sequence[Check]) -> int:
    if any(c.status == "fail" for c in checks):
        return EXIT_FAILED
    if any(c.status == "warn" for c in checks):
        return EXIT_WARNINGS
    return EXIT_OK


def counts(checks: Sequence[Check]) -> dict[str, int]:
    return {s: sum(1 for c in checks if c.status == s) for s in ("ok", "warn", "fail", "skip")}


def render_line(check: Check, width: int = 16) -> str:
    """``FAIL model.embedder    <summary>; <advice>``: one line, the status first so a person scans it."""
    text = check.summary + (f"; {check.advice}" if check.advice and check.status in ("warn", "fail") else "")
    return f"{check.status.upper():<4} {check.name:<{width}} {text}"


def render(checks: Sequence[Check]) -> str:
    width = max([16, *(len(c.name) + 1 for c in checks)])
    n = counts(checks)
    tail = f"{n['ok']} ok, {n['warn']} warn, {n['fail']} fail, {n['skip']} skipped (exit {exit_status(checks)})"
    return "\n".join([*(render_line(c, width) for c in checks), tail])


def document(checks: Sequence[Check], **extra: Any) -> dict[str, Any]:
    """The ``--json`` object: every check, the counts and the exit status."""
    return {**extra, "checks": [c.to_dict() for c in checks], "counts": counts(checks), "exit": exit_status(checks)}
