"""LICENSE and NOTICE: in the repository and in the wheel, and NOTICE names every model and sample file the
package ships (a model added to the wheel without its licence line in NOTICE fails here)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from edgeface.vision.cards import list_cards

REPO = Path(__file__).resolve().parents[2]
NOTICE = (REPO / "NOTICE").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "--wheel-dir", str(out), str(REPO)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]  # as `pip install .` builds it (hatchling from the index)
    (path,) = out.glob("edgeface-*.whl")
    return zipfile.ZipFile(path)


def test_the_licence_is_apache_2_and_notice_says_so() -> None:
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert text.lstrip().startswith("Apache License\n                           Version 2.0, January 2004")
    assert "END OF TERMS AND CONDITIONS" in text
    assert "licensed under the Apache License, Version 2.0 (the file LICENSE)" in NOTICE


def test_notice_names_every_model_in_the_repository_with_its_licence() -> None:
    for card in list_cards(REPO / "models"):
        assert card.file in NOTICE, f"{card.file} (card {card.id}) is not in NOTICE"
        words = {"Apache-2.0": "Apache License, Version 2.0", "CC0-1.0": "CC0 1.0"}
        assert words[card.licence] in NOTICE, card.licence


def test_the_wheel_carries_license_and_notice_and_notice_covers_what_it_ships(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    dist = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
    for f in ("LICENSE", "NOTICE"):
        assert wheel.read(f"{dist}/licenses/{f}") == (REPO / f).read_bytes(), f
    meta = wheel.read(f"{dist}/METADATA").decode()
    assert "License-Expression: Apache-2.0" in meta
    assert "License-File: LICENSE" in meta and "License-File: NOTICE" in meta
    shipped = [n for n in names if n.startswith("edgeface/_models/") and n.endswith(".tflite")]
    shipped += [n for n in names if n.startswith("edgeface/_sample/photos/")]
    assert len(shipped) >= 8
    missing = [n for n in shipped if n.rsplit("/", 1)[1] not in NOTICE]
    assert missing == [], f"shipped but not in NOTICE: {missing}"
    assert (
        any(n.startswith("edgeface/_sample/gallery/") for n in names)
        and "gallery/, demo-signing-DEMO-ONLY.pub" in NOTICE
    )
