"""tests/mutation/report.py turns mutmut's result files into the figures the README and the closing notes quote:
its counting, its sample draws and its interval must be right, or the figure is wrong."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

REPORT = Path(__file__).resolve().parents[1] / "mutation" / "report.py"


@pytest.fixture(scope="module")
def report() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutation_report", REPORT)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _mutants(tmp_path: Path, codes: dict[str, int | None]) -> Path:
    """A mutants/ folder as mutmut writes it: one .meta file per source file with each mutant's exit code."""
    by_file: dict[str, dict[str, int | None]] = {}
    for name, code in codes.items():
        by_file.setdefault(name.split(".x")[0], {})[name] = code
    for module, keys in by_file.items():
        meta = tmp_path / "mutants" / (module.replace(".", "/") + ".py.meta")
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({"exit_code_by_key": keys}))
    return tmp_path / "mutants"


def test_wilson_interval_matches_the_textbook_figures(report: ModuleType) -> None:
    lo, hi = report.wilson(10, 10)
    assert lo == pytest.approx(0.7225, abs=1e-4) and hi == 1.0
    lo, hi = report.wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = report.wilson(95, 100)
    assert lo == pytest.approx(0.8883, abs=1e-4) and hi == pytest.approx(0.9785, abs=1e-4)
    assert report.wilson(0, 0) == (0.0, 1.0)


def test_an_extension_is_disjoint_and_draws_the_same_share_of_every_module(report: ModuleType) -> None:
    names = [f"edgeface.a.x_f__mutmut_{i}" for i in range(200)] + [f"edgeface.b.x_g__mutmut_{i}" for i in range(40)]
    first = report.sample(names, 0.05, 17)
    assert Counter(report.module_of(n) for n in first) == {"edgeface.a": 10, "edgeface.b": 2}
    more = report.extend(names, set(first), 0.10, 18)
    assert not set(more) & set(first)
    assert Counter(report.module_of(n) for n in more) == {"edgeface.a": 19, "edgeface.b": 4}
    assert more == report.extend(names, set(first), 0.10, 18)  # seeded
    assert report.extend(names, set(names), 0.10, 18) == []  # nothing left to draw


def test_names_report_counts_only_the_sample_and_fails_on_an_unexplained_survivor(
    report: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    codes: dict[str, int | None] = {f"edgeface.a.x_f__mutmut_{i}": 1 for i in range(1, 19)}
    codes |= {"edgeface.a.x_f__mutmut_19": 0, "edgeface.a.x_f__mutmut_20": 0, "edgeface.a.x_f__mutmut_21": None}
    codes |= {"edgeface.a.x_f__mutmut_22": -24, "edgeface.b.x_g__mutmut_1": 0}  # a timeout; b is not in the sample
    mutants = _mutants(tmp_path, codes)
    eq = tmp_path / "eq.toml"
    eq.write_text('[[mutant]]\nname = "edgeface.a.x_f__mutmut_19"\nreason = "same"\n')
    names = tmp_path / "names.txt"
    names.write_text("\n".join(n for n in codes if n.startswith("edgeface.a")))
    argv = ["--mutants", str(mutants), "--equivalents", str(eq), "--names", str(names), "--json"]
    assert report.main(argv) == 1  # mutant 20 survived and is not listed
    out = json.loads(capsys.readouterr().out)
    total = out["total"]
    assert (total["generated"], total["detected"], total["timeout"], total["equivalent"]) == (22, 19, 1, 1)
    assert total["survived"] == 1 and total["not_checked"] == 1
    assert total["kill_rate"] == round(19 / 20, 4)
    assert out["unexplained_survivors"] == ["edgeface.a.x_f__mutmut_20"]
    assert out["kill_rate_95"] == [round(v, 4) for v in report.wilson(19, 20)]
    eq.write_text(eq.read_text() + '[[mutant]]\nname = "edgeface.a.x_f__mutmut_20"\nreason = "same"\n')
    assert report.main(argv) == 0
    names.write_text("edgeface.a.x_f__mutmut_1\nedgeface.nowhere.x_h__mutmut_1\n")
    assert report.main(argv) == 2  # a name that is not a mutant here
