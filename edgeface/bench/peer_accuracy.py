"""Accuracy for ``edgeface bench peer``: LFW 10-fold verification and open-set 1:N, both chains, one protocol.

The protocols are edgeface's own (:mod:`edgeface.evaluation.verification`, ``identification``), run on
the vectors each chain produced for the same images. Each side is scored the way it is used: edgeface
by the cosine of its normalised embeddings, face_recognition by the Euclidean distance of its raw
descriptors (``face_distance``, tolerance 0.6); the peer's cosine is reported too, in case it suits
the peer better. An image where a chain finds no face counts against that chain (a pair scores as
"different", a probe returns no candidate).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import Config
from ..evaluation import identification, lfw, verification
from ..evaluation.embeddings import LfwEmbeddings, lfw_embeddings
from ..vision.engine import Engine

if TYPE_CHECKING:
    from .peer_dlib import FaceRecognitionPeer

Wrap = Callable[[Iterable[Any]], Iterable[Any]]

#: face_recognition's compare_faces tolerance (Euclidean distance between descriptors).
PEER_TOLERANCE = 0.6
_MISSING = -1e3  # the score of a pair with a missing face under the Euclidean metric (below any -distance)


def _pairs(root: Path, pairs_per_fold: int | None) -> list[lfw.Pair]:
    """View 2's pairs, or the first ``pairs_per_fold`` matched and as many mismatched ones of each fold."""
    pairs = lfw.pairs(root)
    if not pairs_per_fold:
        return pairs
    kept: dict[tuple[int, bool], int] = {}
    out = []
    for p in pairs:
        if kept.get((p.fold, p.same), 0) < pairs_per_fold:
            kept[(p.fold, p.same)] = kept.get((p.fold, p.same), 0) + 1
            out.append(p)
    return out


def protocol_images(root: Path, pairs_per_fold: int | None = None) -> list[Path]:
    """The images of the verification pairs used (all of View 2's when ``pairs_per_fold`` is None)."""
    return sorted({p for pair in _pairs(root, pairs_per_fold) for p in (pair.a, pair.b)})


def _people(root: Path, pairs_per_fold: int | None) -> dict[str, list[Path]]:
    if not pairs_per_fold:
        return lfw.people(root)
    people: dict[str, list[Path]] = {}
    for p in protocol_images(root, pairs_per_fold):
        people.setdefault(p.parent.name, []).append(p)
    return people


def _verification(pairs: list[lfw.Pair], emb: LfwEmbeddings, metric: str) -> verification.PairScores:
    index = emb.index()
    if metric == "cosine":
        return verification.pair_scores(pairs, index, emb.vectors, emb.found, emb.yaw)
    a = np.array([index[p.a] for p in pairs])
    b = np.array([index[p.b] for p in pairs])
    ok = emb.found[a] & emb.found[b]
    dist = np.linalg.norm(emb.vectors[a] - emb.vectors[b], axis=1)
    return verification.PairScores(
        scores=np.where(ok, -dist, _MISSING).astype(np.float64),
        same=np.array([p.same for p in pairs]),
        fold=np.array([p.fold for p in pairs]),
        yaw=np.full(len(pairs), np.nan),
        missing=int((~ok).sum()),
    )


def _euclidean_as_dot(vecs: np.ndarray, probe: bool) -> np.ndarray:
    """Vectors whose dot products are -|p - g|^2 / 2, so the cosine search ranks by Euclidean distance:
    probes [p, 1, -|p|^2/2], gallery [g, -|g|^2/2, 1]."""
    half = -0.5 * (vecs.astype(np.float64) ** 2).sum(1, keepdims=True)
    ones = np.ones_like(half)
    return np.hstack([vecs, ones, half] if probe else [vecs, half, ones]).astype(np.float32)


def _normalised(emb: LfwEmbeddings) -> LfwEmbeddings:
    norms = np.maximum(np.linalg.norm(emb.vectors, axis=1, keepdims=True), 1e-12)
    return LfwEmbeddings(emb.paths, emb.vectors / norms, emb.found, emb.yaw)


def evaluate(
    pairs: list[lfw.Pair], proto: identification.Protocol, emb: LfwEmbeddings, metric: str, threshold: float
) -> dict[str, Any]:
    """LFW 10-fold and 1:N figures of one chain's vectors. ``threshold`` is the chain's own 1:1 decision
    threshold (a cosine, or for "euclidean" a distance)."""
    ps = _verification(pairs, emb, metric)
    folds = verification.ten_fold(ps)
    index = emb.index()

    def take(paths: list[Path], probe: bool) -> tuple[np.ndarray, np.ndarray]:
        i = np.array([index[p] for p in paths], dtype=np.int64)
        v = emb.vectors[i]
        return (_euclidean_as_dot(v, probe) if metric == "euclidean" else v), emb.found[i]

    g, _ = take(proto.gallery, False)
    m, m_found = take(proto.mated, True)
    n, n_found = take(proto.non_mated, True)
    t = -0.5 * threshold**2 if metric == "euclidean" else threshold
    # raw scores for both chains (the "cosine" space is the plain dot product, which for the peer's
    # augmented vectors is -distance^2 / 2); edgeface's cohort normalisation is not applied here
    one_n = identification.evaluate(proto, g, m, m_found, n, n_found, "cosine", {"one_to_one": t})
    one_n["one_to_one_threshold"] = one_n.pop("at")["one_to_one"]
    one_n.update(gallery=len(proto.gallery), mated_probes=len(proto.mated), non_mated_probes=len(proto.non_mated))
    if metric == "euclidean":  # say each threshold as the distance it is
        for v in (one_n["one_to_one_threshold"], one_n["fpir_0.01"], one_n["fpir_0.001"]):
            v["distance"] = float(np.sqrt(max(-2.0 * v["threshold"], 0.0)))
    return {
        "metric": metric,
        "lfw": {
            "accuracy_mean": folds["accuracy_mean"],
            "accuracy_std": folds["accuracy_std"],
            "threshold_mean": -folds["threshold_mean"] if metric == "euclidean" else folds["threshold_mean"],
            "tar_at_far_1e-3": verification.tar_at_far(ps, 1e-3)["tar"],
            "pairs": len(pairs),
            "pairs_without_face": ps.missing,
        },
        "identify": one_n,
    }


def run(
    config: Config, root: Path, peer: FaceRecognitionPeer | None, pairs_per_fold: int | None, wrap: Wrap
) -> dict[str, dict[str, Any]]:
    """Both chains' figures on one protocol (all of LFW, or ``pairs_per_fold`` pairs per fold and their
    people); ``peer`` None: edgeface alone."""
    pairs = _pairs(root, pairs_per_fold)
    proto = identification.protocol(_people(root, pairs_per_fold))
    paths = sorted({p for pair in pairs for p in (pair.a, pair.b)} | {*proto.gallery, *proto.mated, *proto.non_mated})
    spec = Engine(config).embedder_card.embedder
    assert spec is not None
    ours = lfw_embeddings(config, paths, wrap=wrap)
    out = {"edgeface": evaluate(pairs, proto, ours, "cosine", spec.thresholds.get("cosine", 0.5))}
    out["edgeface"]["images"] = len(paths)
    out["edgeface"]["images_without_face"] = int((~ours.found).sum())
    if peer is not None:
        from . import peer_dlib

        theirs = peer_dlib.lfw_embeddings(peer, paths, wrap=wrap)
        eu = evaluate(pairs, proto, theirs, "euclidean", PEER_TOLERANCE)
        cos = evaluate(pairs, proto, _normalised(theirs), "cosine", 0.0)
        cos["identify"].pop("one_to_one_threshold")  # face_recognition has no cosine threshold of its own
        missing = {"images": len(paths), "images_without_face": int((~theirs.found).sum())}
        out["face_recognition"] = {**eu, **missing}
        out["face_recognition (cosine)"] = {**cos, **missing}
    return out
