"""Replay issue 17's six hand mutations: each must make its named test fail, and the tests pass again once
reverted. Run from a checkout (it edits the files in place and restores them; use a spare worktree):

    python tests/mutation/hand_mutations.py            # all six
    python tests/mutation/hand_mutations.py audit-link # one

Not collected by pytest (no test_ prefix): it runs pytest itself, twice per mutation.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTATIONS = (
    Mutation(
        "audit-link",
        "edgeface/server/audit.py",
        "        if r.prev_hash != prev:\n",
        "        if False:\n",
        (
            "tests/server/test_security.py::test_an_entry_edited_with_its_own_hash_recomputed_breaks_the_link_to_the_next",
        ),
    ),
    Mutation(
        "abs-yaw",
        "edgeface/vision/quality.py",
        "abs(pose.yaw) > limits.max_yaw",
        "pose.yaw > limits.max_yaw",
        ("tests/vision/test_quality_align.py::test_yaw_limit_holds_for_a_head_turned_either_way",),
    ),
    Mutation(
        "pitch-limit",
        "edgeface/vision/quality.py",
        "    if not math.isnan(pose.pitch) and abs(pose.pitch) > limits.max_pitch:\n"
        '        refusals.append(Refusal("pitch", abs(pose.pitch), limits.max_pitch))\n',
        "",
        ("tests/vision/test_quality_align.py::test_pitch_limit_refuses_a_lowered_head_and_passes_a_level_one",),
    ),
    Mutation(
        "two-person-unknown",
        "edgeface/server/review.py",
        'if h.verdict != "confirm":',
        'if h.verdict == "reject":',
        ("tests/server/test_two_person_rule.py",),
    ),
    Mutation(
        "configured-threshold",
        "edgeface/gallery/match.py",
        "raw = threshold if threshold is not None else self.threshold",
        "raw = threshold",
        ("tests/gallery/test_threshold_config.py",),
    ),
    Mutation(
        "configured-normalised-threshold",
        "edgeface/gallery/match.py",
        "t = normalised_threshold if normalised_threshold is not None else self.normalised_threshold",
        "t = normalised_threshold",
        ("tests/gallery/test_threshold_config.py",),
    ),
    Mutation(
        "watchdog-fed-when-stalled",
        "edgeface/daemon/service.py",
        "Watchdog(self.notifier, supervisor.health)",
        "Watchdog(self.notifier, lambda: None)",
        ("tests/daemon/test_watchdog_daemon.py",),
    ),
    Mutation(
        "watchdog-ignores-health",
        "edgeface/daemon/supervisor.py",
        "        if why is None:\n            n.watchdog()",
        "        if True:\n            n.watchdog()",
        ("tests/daemon/test_watchdog_daemon.py", "tests/daemon/test_supervisor.py"),
    ),
)


def pytest_ok(tests: tuple[str, ...]) -> bool:
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests], cwd=ROOT)
    return r.returncode == 0


def check(m: Mutation) -> bool:
    path = ROOT / m.path
    original = path.read_text()
    if original.count(m.old) != 1:
        print(f"{m.name}: the code to mutate is not found once in {m.path}; update this script")
        return False
    try:
        path.write_text(original.replace(m.old, m.new))
        killed = not pytest_ok(m.tests)
    finally:
        path.write_text(original)
    passes = pytest_ok(m.tests)
    print(f"{m.name}: mutant {'killed' if killed else 'SURVIVED'}, reverted tests {'pass' if passes else 'FAIL'}")
    return killed and passes


def main(argv: list[str]) -> int:
    chosen = [m for m in MUTATIONS if not argv or m.name in argv]
    results = {m.name: check(m) for m in chosen}
    print("\n".join(f"{'ok  ' if ok else 'FAIL'} {name}" for name, ok in results.items()))
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
