"""Figures of a mutmut run over the guarantee modules, with the equivalent mutants taken out.

Run after ``mutmut run`` in the checkout that holds ``mutants/``:

    python tests/mutation/report.py             # a table per module, then the survivors not yet explained
    python tests/mutation/report.py --json      # the same figures as JSON
    python tests/mutation/report.py --sample 0.05 --seed 17 > sample.txt   # a stratified sample of mutant names
    mutmut run $(cat sample.txt) && python tests/mutation/report.py --names sample.txt   # figures of the sample
    python tests/mutation/report.py --sample 0.10 --seed 18 --extend sample.txt > more.txt   # 10% more, disjoint

With ``--names``, the total also gives a 95% interval (Wilson's) for the kill rate of all the modules' mutants,
since a stratified sample draws the same share of each module.

A mutant counts as killed when a test failed (or it ran past mutmut's time limit: a mutant that turns a loop
into an endless one is caught that way). "no tests" means no test reached the mutated function in the test
process: it counts as not killed. Each mutant listed in ``equivalent.toml`` (name and why it behaves the same
as the original, or why no test can tell it apart) is taken out of the denominator; a listed mutant that a
test now kills is reported, so the list does not go stale. Exit 1 when the kill rate of the non-equivalent
mutants is under 90% or a survivor is neither killed nor listed.

Not collected by pytest (no test_ prefix): it reads mutmut's own result files.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections import Counter, defaultdict
from pathlib import Path

import tomllib

HERE = Path(__file__).resolve().parent
TARGET = 0.90

# mutmut's exit-code meanings (mutmut.stats.status_by_exit_code, mutmut 3.8), kept here so that the report
# reads the files without importing mutmut's run-time state.
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 35: "suspicious"}
STATUS.update({36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout"})
STATUS.update({37: "caught by type check", -11: "segfault", -9: "segfault", 2: "interrupted"})
DETECTED = {"killed", "timeout", "caught by type check", "segfault"}


def load_results(mutants: Path) -> dict[str, str]:
    """Mutant name → status, from every ``*.meta`` file mutmut wrote under ``mutants``."""
    out: dict[str, str] = {}
    for meta in sorted(mutants.rglob("*.py.meta")):
        data = json.loads(meta.read_text())
        for name, code in data.get("exit_code_by_key", {}).items():
            out[name] = "not checked" if code is None else STATUS.get(code, "suspicious")
    return out


def load_equivalents(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    data = tomllib.loads(path.read_text())
    return {m["name"]: m["reason"] for m in data.get("mutant", [])}


def module_of(name: str) -> str:
    return name.split(".x_")[0].split(".xǁ")[0]


def summarise(results: dict[str, str], equivalents: dict[str, str]) -> dict[str, object]:
    per: dict[str, Counter[str]] = defaultdict(Counter)
    open_survivors: list[str] = []
    stale: list[str] = []
    for name, status in results.items():
        mod = module_of(name)
        c = per[mod]
        c["generated"] += 1
        if name in equivalents:
            c["equivalent"] += 1
            if status in DETECTED:
                stale.append(name)
            continue
        c[status.replace(" ", "_")] += 1
        if status in DETECTED:
            c["detected"] += 1
        elif status != "not checked":
            open_survivors.append(name)
    total: Counter[str] = Counter()
    for c in per.values():
        total.update(c)
    rows = {mod: _with_rate(c) for mod, c in sorted(per.items())}
    return {
        "modules": rows,
        "total": _with_rate(total),
        "unexplained_survivors": sorted(open_survivors),
        "listed_but_killed": sorted(stale),
        "unknown_equivalents": sorted(set(equivalents) - set(results)),
    }


def _with_rate(c: Counter[str]) -> dict[str, float | int]:
    d: dict[str, float | int] = dict(c)
    considered = c["generated"] - c["equivalent"] - c["not_checked"]
    d["kill_rate"] = round(c["detected"] / considered, 4) if considered else 0.0
    return d


def sample(names: list[str], fraction: float, seed: int) -> list[str]:
    """The same share of every module's mutants (at least one), drawn with ``seed``: a run that fits in an
    hour when the whole set would take a day, with every module represented."""
    return extend(names, set(), fraction, seed)


def extend(names: list[str], taken: set[str], fraction: float, seed: int) -> list[str]:
    """A stratified draw of ``fraction`` of every module's mutants that are not in ``taken`` (at least one while
    any is left): with an earlier sample as ``taken``, still the same share of every module."""
    rest = [n for n in names if n not in taken]
    by_module: dict[str, list[str]] = defaultdict(list)
    for n in sorted(rest):
        by_module[module_of(n)].append(n)
    rng = random.Random(seed)
    out: list[str] = []
    for mod in sorted(by_module):
        group = by_module[mod]
        out += rng.sample(group, min(len(group), max(1, math.ceil(fraction * len(group)))))
    return sorted(out)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson's score interval for k successes in n trials (95% by default): unlike the normal approximation
    it stays inside [0, 1] and is honest near 100%, where a sample's kill rate sits."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mutants", type=Path, default=Path("mutants"), help="mutmut's folder (default ./mutants)")
    ap.add_argument("--equivalents", type=Path, default=HERE / "equivalent.toml")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--sample", type=float, metavar="FRACTION", help="print a stratified sample of mutant names")
    ap.add_argument("--seed", type=int, default=17, help="the sample's seed (default 17)")
    ap.add_argument("--names", type=Path, help="report only the mutants named in this file (one per line)")
    ap.add_argument("--extend", type=Path, metavar="FILE", help="with --sample: draw only mutants not named in FILE")
    args = ap.parse_args(argv)
    if not args.mutants.is_dir():
        print(f"error: no {args.mutants}/ here: run `mutmut run` first, in this checkout", file=sys.stderr)
        return 2
    results = load_results(args.mutants)
    if args.sample is not None:
        if not 0 < args.sample <= 1:
            print("error: --sample takes a fraction in (0, 1]", file=sys.stderr)
            return 2
        if args.extend is not None:
            taken = set(args.extend.read_text().split())
            print("\n".join(extend(list(results), taken, args.sample, args.seed)))
        else:
            print("\n".join(sample(list(results), args.sample, args.seed)))
        return 0
    if args.names is not None:
        wanted = set(args.names.read_text().split())
        missing = wanted - set(results)
        if missing:
            print(
                f"error: {len(missing)} names in {args.names} are not mutants here, e.g. {min(missing)}",
                file=sys.stderr,
            )
            return 2
        results = {n: st for n, st in results.items() if n in wanted}
    equivalents = load_equivalents(args.equivalents)
    if args.names is not None:
        equivalents = {n: why for n, why in equivalents.items() if n in results}
    s = summarise(results, equivalents)
    total = s["total"]
    assert isinstance(total, dict)
    if args.names is not None:
        considered = int(total["generated"]) - int(total.get("equivalent", 0)) - int(total.get("not_checked", 0))
        lo, hi = wilson(int(total.get("detected", 0)), considered)
        s["kill_rate_95"] = [round(lo, 4), round(hi, 4)]
    if args.json:
        print(json.dumps(s, indent=2))
    else:
        cols = ("generated", "detected", "killed", "timeout", "survived", "no_tests", "equivalent", "not_checked")
        print(f"{'module':34}" + "".join(f"{c:>12}" for c in cols) + f"{'kill rate':>11}")
        modules = s["modules"]
        assert isinstance(modules, dict)
        for mod, row in [*modules.items(), ("TOTAL", total)]:
            print(f"{mod:34}" + "".join(f"{row.get(c, 0):>12}" for c in cols) + f"{row['kill_rate']:>11.1%}")
        if "kill_rate_95" in s:
            lo_hi = s["kill_rate_95"]
            assert isinstance(lo_hi, list)
            print(
                f"\nkill rate of the sample {total['kill_rate']:.1%}; 95% interval for all mutants "
                f"{lo_hi[0]:.1%} to {lo_hi[1]:.1%} (Wilson)"
            )
        for key in ("unexplained_survivors", "listed_but_killed", "unknown_equivalents"):
            names = s[key]
            assert isinstance(names, list)
            if names:
                print(f"\n{key.replace('_', ' ')} ({len(names)}):")
                print("\n".join(f"  {n}" for n in names))
    ok = float(total["kill_rate"]) >= TARGET and not s["unexplained_survivors"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
