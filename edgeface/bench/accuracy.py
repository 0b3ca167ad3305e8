"""``edgeface bench lfw`` and ``edgeface bench identify``: accuracy of the whole pipeline on LFW."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from ..config import Config
from ..engine import Engine
from . import identification, lfw, verification
from .embeddings import embed_chips, lfw_embeddings

Wrap = Callable[[Iterable[Any]], Iterable[Any]]


def with_embedder(config: Config, embedder: str) -> Config:
    return dataclasses.replace(config, models=dataclasses.replace(config.models, embedder=embedder))


def verify_one(config: Config, root: Path, flip: bool, wrap: Wrap) -> dict[str, Any]:
    pairs = lfw.pairs(root)
    paths = sorted({p for pair in pairs for p in (pair.a, pair.b)})
    emb = lfw_embeddings(config, paths, flip=flip, wrap=wrap)
    ps = verification.pair_scores(pairs, emb.index(), emb.vectors, emb.found, emb.yaw)
    folds = verification.ten_fold(ps)
    return {
        "embedder": config.models.embedder,
        "flip": flip,
        "images": len(paths),
        "images_without_face": int((~emb.found).sum()),
        "pairs_without_face": ps.missing,
        **folds,
        "tar_at_far_1e-3": verification.tar_at_far(ps, 1e-3),
        "by_yaw": verification.by_pose(ps, folds["threshold_mean"]),
    }


def verify_dlib_chips(config: Config, root: Path, chips_file: Path, flip: bool) -> dict[str, Any]:
    """The same protocol on chips aligned by dlib itself (models/alignment/dlib_reference.py)."""
    z = np.load(chips_file)
    names = [root / n for n in z["names"]]
    engine = Engine(config)
    vecs = np.concatenate([embed_chips(engine, z["chips"][s : s + 64], flip) for s in range(0, len(names), 64)])
    index = {p: i for i, p in enumerate(names)}
    pairs = lfw.pairs(root)
    missing = [p for pair in pairs for p in (pair.a, pair.b) if p not in index]
    all_paths = names + sorted(set(missing))
    vectors = np.concatenate([vecs, np.zeros((len(all_paths) - len(names), vecs.shape[1]), np.float32)])
    found = np.arange(len(all_paths)) < len(names)
    ps = verification.pair_scores(pairs, {p: i for i, p in enumerate(all_paths)}, vectors, found,
                                  np.full(len(all_paths), np.nan))
    return {"embedder": config.models.embedder, "alignment": "dlib (HOG + 5-point + get_face_chip)",
            "images_without_face": len(set(missing)), **verification.ten_fold(ps)}


def identify_one(config: Config, root: Path, flip: bool, wrap: Wrap) -> dict[str, Any]:
    proto = identification.protocol(lfw.people(root))
    paths = sorted(set(proto.gallery) | set(proto.mated) | set(proto.non_mated))
    emb = lfw_embeddings(config, paths, flip=flip, wrap=wrap)
    idx = emb.index()

    def take(ps: list[Path]) -> tuple[np.ndarray, np.ndarray]:
        i = np.array([idx[p] for p in ps])
        return emb.vectors[i], emb.found[i]

    g, g_found = take(proto.gallery)
    m, m_found = take(proto.mated)
    n, n_found = take(proto.non_mated)
    card = Engine(config).embedder_card
    threshold = card.embedder.thresholds.get("cosine", 0.5) if card.embedder else 0.5
    return {
        "embedder": config.models.embedder,
        "flip": flip,
        "gallery_without_face": int((~g_found).sum()),
        **identification.evaluate(proto, g, m, m_found, n, n_found, threshold),
    }
