"""Check that tests kill given mutants, the way mutmut runs one, without a new ``mutmut run``.

    python tests/mutation/check_kill.py NAME [NAME ...] [-- TEST ...]

Each NAME runs in the mutated copy (``mutants/``) with ``MUTANT_UNDER_TEST=NAME``, against the TESTs given,
or else every test mutmut recorded as reaching the mutated function (``mutants/mutmut-stats.json``), fastest
first, stopping at the first failure. A new ``mutmut run`` first runs every test unmutated and records anew
which tests reach what: many minutes before the first mutant. This answers "does my new test kill it?" in
seconds. Copy the changed test files into ``mutants/tests/`` first (mutmut made that copy when it ran).

Exit 0 when every NAME is killed, 1 when one survives. Not collected by pytest (no test_ prefix).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def tests_for(mutants: Path, name: str) -> list[str]:
    """The tests mutmut recorded as reaching ``name``'s function, fastest first."""
    stats = json.loads((mutants / "mutmut-stats.json").read_text())
    function = name.rsplit("__mutmut_", 1)[0]
    durations = stats["duration_by_test"]
    return sorted(stats["tests_by_mangled_function_name"].get(function, []), key=lambda t: durations.get(t, 0.0))


def run(mutants: Path, name: str, tests: list[str]) -> int:
    """pytest's exit code for ``tests`` with mutant ``name`` active (1: a test failed, so it is killed)."""
    site = ROOT / "tests" / "mutation" / "site"
    env = dict(os.environ, MUTANT_UNDER_TEST=name, PYTHONPATH=f"{mutants.resolve()}{os.pathsep}{site}")
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
    return subprocess.run(cmd, cwd=mutants, env=env, capture_output=True).returncode


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    names, tests = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mutants", type=Path, default=Path("mutants"), help="mutmut's folder (default ./mutants)")
    ap.add_argument("names", nargs="+", metavar="NAME")
    args = ap.parse_args(names)
    if not (args.mutants / "mutmut-stats.json").exists():
        print(f"error: no {args.mutants}/mutmut-stats.json: run `mutmut run` once in this checkout", file=sys.stderr)
        return 2
    survived = 0
    for name in args.names:
        chosen = tests or tests_for(args.mutants, name)
        if not chosen:
            print(f"no tests   {name}: mutmut recorded no test reaching it; name one after --")
            survived += 1
            continue
        t0 = time.monotonic()
        code = run(args.mutants, name, chosen)
        status = {0: "survived", 1: "killed"}.get(code, f"error (pytest exit {code})")
        survived += code != 1
        print(f"{status:10} {time.monotonic() - t0:6.1f} s  {len(chosen):3d} tests  {name}", flush=True)
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
