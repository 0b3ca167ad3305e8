"""An arm64 unit installs with no compiler: every runtime dependency is a binary wheel for manylinux
aarch64 on PyPI, or ships in firmware/wheels (annoy: PyPI has only its source), and the image installs
binary-only. The PyPI check needs the network (CI has it); firmware/arm64/proof.sh does the install itself
in an emulated arm64 root (too slow for CI: see firmware/arm64/README.md)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import parse_wheel_filename

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
WHEELS = REPO / "firmware" / "wheels"
STAGE = REPO / "firmware" / "image" / "pi-gen" / "stage-edgeface"
INSTALL = REPO / "firmware" / "image" / "install-edgeface.sh"
# The Pythons the units run: JetPack 6 (Ubuntu 22.04), Raspberry Pi OS 12 (bookworm) and 13 (trixie).
PYTHONS = ("3.10", "3.11", "3.13")
# A wheel with one of these tags runs on glibc 2.28 and later: all three (2.35, 2.36, 2.41). pip takes
# --platform literally (no older manylinux tags implied), so the check names each one.
PLATFORMS = ["manylinux2014_aarch64", *(f"manylinux_2_{v}_aarch64" for v in range(17, 29))]
# The Pythons whose image the project builds (firmware/image: Raspberry Pi OS 12): firmware/wheels must
# cover them. JetPack's 3.10 is built with SUITE=jammy (firmware/arm64/README.md), not here.
IMAGE_PYTHONS = ("3.11", "3.13")


def runtime_requirements(python: str) -> list[Requirement]:
    """pyproject's runtime dependencies that apply on a 64-bit ARM Linux unit with this Python."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    env = {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "platform_machine": "aarch64",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }
    return [r for r in map(Requirement, deps) if r.marker is None or r.marker.evaluate(env)]


def shipped(python: str) -> dict[str, str]:
    """Project name -> version of the wheels in firmware/wheels that install on aarch64 with this Python."""
    cp = "cp" + python.replace(".", "")
    found = {}
    for whl in WHEELS.glob("*.whl"):
        name, version, _, tags = parse_wheel_filename(whl.name)
        if any(t.interpreter in (cp, "py3") and t.platform.endswith("aarch64") for t in tags):
            found[str(name)] = str(version)
    return found


def test_shipped_wheels_match_their_recorded_hashes_and_build_record() -> None:
    import hashlib

    sums = dict(reversed(line.split("  ")) for line in (WHEELS / "SHA256SUMS").read_text().splitlines() if line)
    wheels = sorted(p.name for p in WHEELS.glob("*.whl"))
    assert wheels and sorted(sums) == wheels, "every wheel in firmware/wheels has one SHA256SUMS line, and no other"
    buildinfo = tomllib.loads((WHEELS / "BUILDINFO.toml").read_text())
    for name in wheels:
        data = (WHEELS / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == sums[name] == buildinfo[name]["sha256"], name
        with zipfile.ZipFile(WHEELS / name) as z:
            libs = [n for n in z.namelist() if n.endswith(".so")]
            assert libs, f"{name}: no compiled library"
            elf = z.read(libs[0])[:20]
            # ELF, 64-bit, little-endian, e_machine 183 (EM_AARCH64)
            assert elf[:4] == b"\x7fELF" and elf[4] == 2 and elf[5] == 1 and int.from_bytes(elf[18:20], "little") == 183


@pytest.mark.parametrize("python", IMAGE_PYTHONS)
def test_what_pypi_has_only_as_source_ships_as_a_wheel_that_satisfies_pyproject(python: str) -> None:
    have = shipped(python)
    assert "annoy" in have, (
        f"no annoy wheel for Python {python} in firmware/wheels: run firmware/arm64/build-annoy-wheel.sh"
    )
    for req in runtime_requirements(python):
        if req.name in have:
            assert req.specifier.contains(have[req.name]), f"{req} is not satisfied by the shipped {have[req.name]}"


@pytest.mark.parametrize("python", PYTHONS)
def test_runtime_dependencies_resolve_to_aarch64_wheels_on_pypi(python: str, tmp_path: Path) -> None:
    """`pip download --only-binary :all:` for manylinux aarch64 resolves with no source distribution."""
    from_firmware = set(shipped(IMAGE_PYTHONS[0]))  # annoy: the documented alternative to PyPI
    # Markers are already evaluated for the unit; pip would evaluate them for this machine instead.
    reqs = [f"{r.name}{r.specifier}" for r in runtime_requirements(python) if r.name not in from_firmware]
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    cmd = [sys.executable, "-m", "pip", "download", "--isolated", "--only-binary", ":all:", *platforms]
    cmd += ["--python-version", python, "--implementation", "cp", "--dest", str(tmp_path), *reqs]
    # --isolated: only PyPI, whatever this machine's pip configuration adds (local indexes, find-links).
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False, env=env)
    assert r.returncode == 0, (
        f"Python {python}: no aarch64 wheel for some dependency:\n{r.stdout[-2000:]}{r.stderr[-2000:]}"
    )
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files and all(f.endswith(".whl") for f in files), files
    got = {str(parse_wheel_filename(f)[0]) for f in files}
    assert {Requirement(r).name for r in reqs} <= got


def test_no_32_bit_arm_route_is_promised() -> None:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not [d for d in deps if "armv7l" in d], "no TFLite runtime has armv7l wheels for Python >= 3.10"
    readme = (REPO / "README.md").read_text()
    assert not re.search(r"32-bit ARM uses", readme)


def test_image_installs_binary_only_from_the_shipped_wheels_and_has_no_compiler() -> None:
    script = INSTALL.read_text()
    assert "--only-binary :all:" in script and "--find-links" in script and "--system-site-packages" in script
    assert subprocess.run(["sh", "-n", str(INSTALL)], check=False).returncode == 0
    run = (STAGE / "01-edgeface" / "00-run.sh").read_text()
    assert "install-edgeface" in run and "pip install" not in run, "the stage installs through install-edgeface.sh"
    build = (REPO / "firmware" / "image" / "build.sh").read_text()
    assert "firmware/wheels" in build and "install-edgeface.sh" in build and "SHA256SUMS" in build
    packages = (STAGE / "00-packages" / "00-packages").read_text().split()
    compilers = {"build-essential", "gcc", "g++", "clang", "python3-dev", "cmake"}
    assert not compilers & set(packages), "a unit gets no compiler: ship a wheel in firmware/wheels instead"


def test_install_script_refuses_a_wheel_folder_with_a_changed_wheel(tmp_path: Path) -> None:
    (tmp_path / "edgeface-0.1.0-py3-none-any.whl").write_bytes(b"not the wheel")
    (tmp_path / "SHA256SUMS").write_text("0" * 64 + "  edgeface-0.1.0-py3-none-any.whl\n")
    r = subprocess.run(
        ["sh", str(INSTALL), str(tmp_path), str(tmp_path / "venv")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode != 0 and "does not match SHA256SUMS" in r.stderr, r.stderr
    assert not (tmp_path / "venv").exists(), "nothing is installed from an unchecked folder"
