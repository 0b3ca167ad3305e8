"""tools/test.sh, the README's one test command: it installs only what is missing, a second run installs
nothing and runs pytest with the arguments given, and a missing LFW stops it with where to get it.

apt-get, dpkg-query, sudo and the venv's python are stand-ins that record their calls (the real set-up is
proven on a fresh Debian root by tools/fresh_debian_check.sh; these tests pin the script's decisions).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tools" / "test.sh"
# The script's package list, whatever it holds: the README must name each one.
PACKAGES = SCRIPT.read_text().split("\nPACKAGES=(", 1)[1].split(")", 1)[0].split()

# dpkg-query -W -f='${db:Status-Status}' PKG: "installed" unless PKG is listed in $MISSING_PACKAGES.
DPKG_QUERY = """#!/bin/sh
for p; do :; done
case " $MISSING_PACKAGES " in *" $p "*) exit 1 ;; esac
printf installed
"""
# apt-get: records its arguments; an install takes the packages off the missing list for later runs.
APT_GET = """#!/bin/sh
echo "apt-get $*" >>"$CALLS"
"""
SUDO = """#!/bin/sh
echo "sudo" >>"$CALLS"
exec "$@"
"""
# The venv's python: `-c` runs the real interpreter (the script asks its version); `-m pip|pytest` is
# recorded, not run.
VENV_PYTHON = f"""#!/bin/sh
if [ "$1" = "-c" ]; then exec {sys.executable} "$@"; fi
echo "python $*" >>"$CALLS"
"""
ACTIVATE = 'PATH="$PWD/.venv/bin:$PATH"; export PATH\n'


def _exe(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


def checkout(tmp_path: Path) -> Path:
    """A checkout with the script, a pyproject, a venv stand-in, LFW beside it, stubs on PATH."""
    repo = tmp_path / "work" / "main"
    (repo / "tools").mkdir(parents=True)
    shutil.copy2(SCRIPT, repo / "tools" / "test.sh")
    (repo / "pyproject.toml").write_text('[project]\nname = "x"\n')
    _exe(repo / ".venv" / "bin" / "python", VENV_PYTHON)
    (repo / ".venv" / "bin" / "activate").write_text(ACTIVATE)
    lfw = tmp_path / "work" / "shared" / "data" / "lfw"
    (lfw / "images").mkdir(parents=True)
    (lfw / "pairs.txt").write_text("10\t300\n")
    stubs = tmp_path / "stubs"
    _exe(stubs / "dpkg-query", DPKG_QUERY)
    _exe(stubs / "apt-get", APT_GET)
    _exe(stubs / "sudo", SUDO)
    return repo


def run(repo: Path, *args: str, missing: str = "", **env: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    calls = repo.parent / "calls"
    calls.write_text("")
    environ = {
        "PATH": f"{repo.parent.parent / 'stubs'}:/usr/bin:/bin",
        "HOME": str(repo.parent),
        "CALLS": str(calls),
        "MISSING_PACKAGES": missing,
        **env,
    }
    done = subprocess.run(
        ["bash", "tools/test.sh", *args], cwd=repo, env=environ, capture_output=True, text=True, timeout=60
    )
    return done, calls.read_text().splitlines()


def installs(calls: list[str]) -> list[str]:
    return [c for c in calls if c.startswith("apt-get") or " pip " in f" {c} "]


def test_first_run_installs_what_is_missing_and_the_second_installs_nothing(tmp_path: Path) -> None:
    repo = checkout(tmp_path)
    done, calls = run(repo, "-q", "tests/outbox", "-k", "a b", missing="chromium g++")
    assert done.returncode == 0, done.stderr
    apt = [c for c in calls if c.startswith("apt-get install")]
    assert len(apt) == 1 and apt[0].split()[-2:] == ["chromium", "g++"], calls  # only the missing ones
    assert "python -m pip install -q -e .[peer,test]" in calls
    assert calls[-1] == "python -m pytest -q tests/outbox -k a b"  # arguments passed through, in order
    assert ("sudo" in calls) == (os.geteuid() != 0)

    done, calls = run(repo, "tests/firmware")
    assert done.returncode == 0, done.stderr
    assert installs(calls) == [] and calls == ["python -m pytest tests/firmware"]
    assert "installing" not in done.stderr


def test_a_new_extra_or_a_changed_pyproject_reinstalls_with_the_extras_installed_before(tmp_path: Path) -> None:
    repo = checkout(tmp_path)
    assert run(repo, "--setup-only")[0].returncode == 0
    done, calls = run(repo, "--setup-only", EDGEFACE_EXTRAS="test,lint")
    assert calls == ["python -m pip install -q -e .[lint,peer,test]"], calls
    assert run(repo, "--setup-only", EDGEFACE_EXTRAS="lint")[1] == []  # a subset of what is there
    (repo / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = ["numpy"]\n')
    done, calls = run(repo)
    assert calls == ["python -m pip install -q -e .[lint,peer,test]", "python -m pytest"], calls


def test_setup_only_runs_no_tests(tmp_path: Path) -> None:
    repo = checkout(tmp_path)
    done, calls = run(repo, "--setup-only", "-x")
    assert done.returncode == 0 and not any("pytest" in c for c in calls), calls


def test_missing_lfw_stops_before_the_tests_and_says_where_to_put_it(tmp_path: Path) -> None:
    repo = checkout(tmp_path)
    done, calls = run(repo, EDGEFACE_LFW=str(tmp_path / "nowhere"))
    assert done.returncode == 2 and not any("pytest" in c for c in calls)
    assert f"LFW not found at {tmp_path / 'nowhere'}" in done.stderr
    assert "EDGEFACE_LFW" in done.stderr and "../shared/data/lfw" in done.stderr


def test_the_readme_names_every_package_the_command_installs() -> None:
    assert {"mosquitto", "chromium", "postgresql", "systemd", "python3-venv"} <= set(PACKAGES)
    readme = (REPO / "README.md").read_text()
    test_section = readme.split("## Test", 1)[1].split("\n## ", 1)[0]
    assert "tools/test.sh" in test_section
    assert all(f"`{p}`" in test_section for p in PACKAGES if p != "python3")
