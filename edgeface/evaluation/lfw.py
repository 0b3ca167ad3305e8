"""The LFW dataset as the benchmarks use it (images/<Person>/<Person>_NNNN.jpg and pairs.txt).

LFW is a research set: it is read from where it lies (../shared/data/lfw, or $EDGEFACE_LFW), never
copied into the repository.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import EdgefaceError


def default_lfw_dir() -> Path:
    env = os.environ.get("EDGEFACE_LFW")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    for candidate in (repo.parent / "shared" / "data" / "lfw", Path.cwd().parent / "shared" / "data" / "lfw"):
        if candidate.is_dir():
            return candidate
    return repo.parent / "shared" / "data" / "lfw"


def lfw_dir(path: Path | None = None) -> Path:
    d = Path(path) if path else default_lfw_dir()
    if not (d / "images").is_dir():
        raise EdgefaceError(
            f"LFW not found at {d} (expected {d}/images/<Person>/*.jpg and {d}/pairs.txt); pass --lfw DIR "
            "or set EDGEFACE_LFW"
        )
    return d


def image_path(root: Path, person: str, index: int) -> Path:
    return root / "images" / person / f"{person}_{index:04d}.jpg"


def all_images(root: Path) -> list[Path]:
    return sorted((root / "images").glob("*/*.jpg"))


# LFW names that are one person, each checked by eye (2026-11-29) among the highest-scoring "impostor"
# probes of `edgeface bench identify`: spelling variants of one name, and photos filed under the wrong
# name (the same photo under two names, or another person's photo). name -> the name it is merged into.
# At FPIR 0.1% (7 of 6,947 non-mated probes) these pairs alone set the threshold.
DUPLICATES = {
    "Noer_Moeis": "Noer_Muis",  # spelling
    "Hasan_Wirayuda": "Hassan_Wirajuda",  # spelling
    "Sung_Hong_Choi": "Choi_Sung-hong",  # name order
    "Wang_Yingfan": "Yingfan_Wang",  # name order
    "John_Burnett": "John_Barnett",  # spelling
    "Bart_Hendricks": "Ricky_Ray",  # the same photo under both names
    "Andrew_Caldecott": "Andrew_Gilligan",  # the same photo under both names
    "Carlos_Beltran": "Raul_Ibanez",  # the same photo under both names
    "Anja_Paerson": "Janica_Kostelic",  # the same photo under both names
    "Shinya_Taniguchi": "Takahiro_Mori",  # one person, one event
    "Carlos_Ruckauf": "Eduardo_Duhalde",  # Ruckauf's only photo shows Duhalde
}


def people(root: Path, merge_duplicates: bool = False) -> dict[str, list[Path]]:
    """Person -> their images, in file order; ``merge_duplicates`` files :data:`DUPLICATES` under one name."""
    out: dict[str, list[Path]] = {}
    for p in all_images(root):
        name = p.parent.name
        out.setdefault(DUPLICATES.get(name, name) if merge_duplicates else name, []).append(p)
    return out


@dataclass(frozen=True)
class Pair:
    a: Path
    b: Path
    same: bool
    fold: int


def pairs(root: Path) -> list[Pair]:
    """LFW View 2: 10 folds of 300 matched then 300 mismatched pairs."""
    lines = (root / "pairs.txt").read_text().split("\n")
    folds, per = (int(v) for v in lines[0].split())
    out: list[Pair] = []
    rows = [ln.split("\t") for ln in lines[1:] if ln.strip()]
    if len(rows) != folds * per * 2:
        raise EdgefaceError(f"{root}/pairs.txt: expected {folds * per * 2} pairs, found {len(rows)}")
    for i, r in enumerate(rows):
        fold = i // (2 * per)
        if len(r) == 3:
            out.append(Pair(image_path(root, r[0], int(r[1])), image_path(root, r[0], int(r[2])), True, fold))
        else:
            out.append(Pair(image_path(root, r[0], int(r[1])), image_path(root, r[2], int(r[3])), False, fold))
    return out
