"""``edgeface bench lfw`` and ``edgeface bench identify``: accuracy of the whole pipeline on LFW."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config
from ..vision import calibration
from ..vision.engine import Engine
from . import identification, lfw, verification
from .embeddings import lfw_embeddings

Wrap = Callable[[Iterable[Any]], Iterable[Any]]


def with_embedder(config: Config, embedder: str) -> Config:
    return dataclasses.replace(config, models=dataclasses.replace(config.models, embedder=embedder))


def alignment_name(config: Config) -> str:
    engine = Engine(config)
    if engine.refiner is not None:
        return f"edgeface ({engine.refiner.card.id} landmarks)"
    return f"edgeface ({config.models.detector} keypoints)"


def verify_one(config: Config, root: Path, wrap: Wrap) -> dict[str, Any]:
    pairs = lfw.pairs(root)
    paths = sorted({p for pair in pairs for p in (pair.a, pair.b)})
    emb = lfw_embeddings(config, paths, wrap=wrap)
    ps = verification.pair_scores(pairs, emb.index(), emb.vectors, emb.found, emb.yaw)
    folds = verification.ten_fold(ps)
    return {
        "embedder": config.models.embedder,
        "alignment": alignment_name(config),
        "flip": Engine(config).flip_fusion,
        "images": len(paths),
        "images_without_face": int((~emb.found).sum()),
        "pairs_without_face": ps.missing,
        **folds,
        "tar_at_far_1e-3": verification.tar_at_far(ps, 1e-3),
        "by_yaw": verification.by_pose(ps, folds["threshold_mean"]),
    }


def verify_dlib_chips(config: Config, root: Path, chips_file: Path, wrap: Wrap) -> list[dict[str, Any]]:
    """Our alignment against dlib's own (chips from models/alignment/dlib_reference.py), same embedder.

    dlib's HOG detector misses some LFW faces; those pairs score -1 in the first row, and the second
    and third rows compare both alignments on only the pairs where dlib found both faces.
    """
    z = np.load(chips_file)
    names = [root / n for n in z["names"]]
    engine = Engine(config)
    vecs = np.concatenate([engine.embed(z["chips"][s : s + 64]) for s in range(0, len(names), 64)])
    pairs = lfw.pairs(root)
    paths = sorted({p for pair in pairs for p in (pair.a, pair.b)})
    index = {p: i for i, p in enumerate(paths)}
    dlib_vecs = np.zeros((len(paths), vecs.shape[1]), np.float32)
    dlib_found = np.zeros(len(paths), bool)
    for n, v in zip(names, vecs, strict=True):
        dlib_vecs[index[n]] = v
        dlib_found[index[n]] = True
    nan = np.full(len(paths), np.nan)
    dlib_ps = verification.pair_scores(pairs, index, dlib_vecs, dlib_found, nan)
    ours = lfw_embeddings(config, paths, wrap=wrap)
    ours_ps = verification.pair_scores(pairs, index, ours.vectors, ours.found, ours.yaw)
    both = np.array([dlib_found[index[p.a]] and dlib_found[index[p.b]] for p in pairs])

    def subset(ps: verification.PairScores) -> verification.PairScores:
        return verification.PairScores(ps.scores[both], ps.same[both], ps.fold[both], ps.yaw[both], 0)

    base = {"embedder": config.models.embedder, "flip": engine.flip_fusion}
    dlib_name = "dlib (HOG + 5-point + get_face_chip)"
    return [
        {
            **base,
            "alignment": dlib_name,
            "pairs": len(pairs),
            "images_without_face": int((~dlib_found).sum()),
            **verification.ten_fold(dlib_ps),
        },
        {
            **base,
            "alignment": dlib_name + ", pairs dlib found",
            "pairs": int(both.sum()),
            "images_without_face": 0,
            **verification.ten_fold(subset(dlib_ps)),
        },
        {
            **base,
            "alignment": alignment_name(config) + ", same pairs",
            "pairs": int(both.sum()),
            "images_without_face": 0,
            **verification.ten_fold(subset(ours_ps)),
        },
    ]


PEOPLE = ("all", "held-out", "validation")


def identify_one(
    config: Config,
    root: Path,
    wrap: Wrap,
    *,
    images: tuple[int, ...] = (1, 3),
    people: tuple[str, ...] = ("all", "held-out"),
    target_fpirs: tuple[float, ...] = (0.01, 0.001),
    limit: int | None = None,
    merge_duplicates: bool = False,
) -> dict[str, Any]:
    """Open-set 1:N (identification.py's protocol) for each gallery size in images per person and each
    set of people: raw cosine and the bundle's normalised score side by side, each also at the
    thresholds a bundle of that gallery derives for ``target_fpirs``. ``limit``: people (a smoke run);
    ``merge_duplicates``: LFW names that are one person counted as one (lfw.DUPLICATES)."""
    from ..gallery import cohort

    everyone = lfw.people(root, merge_duplicates)
    if limit is not None:
        everyone = {n: everyone[n] for n in sorted(everyone)[:limit]}
    validation, held_out = identification.split_people(everyone)
    sets = {"all": sorted(everyone), "held-out": held_out, "validation": validation}
    paths = sorted(p for ps in everyone.values() for p in ps) if limit is not None else lfw.all_images(root)
    emb = lfw_embeddings(config, paths, wrap=wrap)
    idx = emb.index()

    def take(ps: list[Path]) -> tuple[np.ndarray, np.ndarray]:
        i = np.array([idx[p] for p in ps], np.int64)
        return emb.vectors[i], emb.found[i]

    spec = Engine(config).embedder_card.embedder
    assert spec is not None
    runs = []
    for who in people:
        for n_img in images:
            proto = identification.protocol(everyone, images=n_img, only=sets[who])
            g, g_found = take(proto.gallery)
            labels = np.asarray(proto.gallery_labels, np.int64)
            g, labels = g[g_found], labels[g_found]  # an image without a face is not enrolled
            proto = dataclasses.replace(proto, gallery_labels=labels.tolist())
            m, m_found = take(proto.mated)
            n, n_found = take(proto.non_mated)
            raw_t, norm_t = {}, {}
            for f in target_fpirs:
                if spec.impostor_tail is not None:
                    raw_t[f"derived for FPIR {f:g}"] = calibration.identification_threshold(spec, len(g), f)
            norm = cohort.fit(g, labels, proto.enrolled)
            if norm is not None:
                for f in target_fpirs:
                    norm_t[f"derived for FPIR {f:g}"] = cohort.derive_threshold(
                        norm, g, labels, len(proto.enrolled), f
                    )[0]
            run: dict[str, Any] = {
                "people": who,
                "images_per_person": n_img,
                "gallery_people": len(proto.enrolled),
                "gallery_images": len(g),
                "mated_probes": len(proto.mated),
                "non_mated_probes": len(proto.non_mated),
                "cosine": identification.evaluate(proto, g, m, m_found, n, n_found, "cosine", raw_t),
            }
            if norm is not None:
                run["normalised"] = identification.evaluate(
                    proto, g, m, m_found, n, n_found, "normalised", norm_t, norm
                )
                run["cohort"] = {"size": len(norm.cohort), "top_k": norm.top_k}
            runs.append(run)
    return {
        "embedder": config.models.embedder,
        "flip": Engine(config).flip_fusion,
        "split_seed": identification.SPLIT_SEED,
        "merge_duplicates": merge_duplicates,
        "runs": runs,
    }
