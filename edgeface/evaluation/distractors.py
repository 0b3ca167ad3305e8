"""Synthetic face embeddings that follow the statistics of real ones, for index benchmarks at 1M.

Real embeddings are not uniform on the sphere: they share a large common component (every face looks
like a face), identities spread along a few dozen dominant directions, and a person's images cluster
around their own centre. A two-level Gaussian captures exactly these first and second moments:

    centre_p  ~ N(mu, Sigma_between)        one per synthetic identity
    x_pi      =  normalise(centre_p + e),   e ~ N(0, Sigma_within)

``mu`` and ``Sigma_between`` are the mean and covariance of the per-person mean embeddings, and
``Sigma_within`` the covariance of images around their person's mean (people with 2+ images), all
estimated from real embeddings (LFW) by :func:`fit`. :func:`compare` checks the result the way an index
sees it: the distribution of nearest-neighbour similarities of probes against a real and a synthetic
gallery of the same size, plus impostor and genuine pair similarities.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EmbeddingModel:
    mean: np.ndarray  # (D,)
    between: np.ndarray  # (D, D) Cholesky factor of Sigma_between
    within: np.ndarray  # (D, D) Cholesky factor of Sigma_within

    @property
    def dim(self) -> int:
        return len(self.mean)


def _chol(cov: np.ndarray) -> np.ndarray:
    d = len(cov)
    return np.linalg.cholesky(cov + np.eye(d) * 1e-6 * np.trace(cov) / d)


def fit(vectors: np.ndarray, labels: np.ndarray) -> EmbeddingModel:
    """Estimate the two-level Gaussian from real embeddings and their person labels."""
    v = np.asarray(vectors, np.float64)
    labels = np.asarray(labels)
    uniq, inv, counts = np.unique(labels, return_inverse=True, return_counts=True)
    sums = np.zeros((len(uniq), v.shape[1]))
    np.add.at(sums, inv, v)
    means = sums / counts[:, None]
    resid = v - means[inv]
    multi = counts[inv] > 1
    # unbiased within-person covariance: each person with n images contributes n-1 degrees of freedom
    dof = float(np.sum(counts[counts > 1] - 1))
    within = resid[multi].T @ resid[multi] / max(dof, 1.0)
    centre = means.mean(axis=0)
    between = np.cov(means.T)
    # a person's mean of n images carries within/n of noise: remove it from the spread of centres
    between -= within * float(np.mean(1.0 / counts))
    w, q = np.linalg.eigh(between)
    between = (q * np.maximum(w, 0)) @ q.T
    return EmbeddingModel(centre, _chol(between), _chol(within))


def toy_model(dim: int = 128, seed: int = 0) -> EmbeddingModel:
    """A stand-in with face-like statistics (common component, a few dominant directions), for tests."""
    rng = np.random.default_rng(seed)
    mean = rng.normal(size=dim)
    mean *= 0.9 / np.linalg.norm(mean)
    basis = np.linalg.qr(rng.normal(size=(dim, dim)))[0]
    spectrum = 0.12 * np.exp(-np.arange(dim) / 18.0) + 0.0006
    between = (basis * spectrum) @ basis.T
    within = (basis[:, ::-1] * (spectrum * 0.18 + 0.0002)) @ basis[:, ::-1].T
    return EmbeddingModel(mean, _chol(between), _chol(within))


def sample(
    model: EmbeddingModel, identities: int, images_per_identity: int | tuple[int, int] = 1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(vectors (N, D) float32 L2-normalised, labels (N,)) for ``identities`` synthetic people."""
    rng = np.random.default_rng(seed)
    if isinstance(images_per_identity, int):
        counts = np.full(identities, images_per_identity)
    else:
        counts = rng.integers(images_per_identity[0], images_per_identity[1] + 1, identities)
    labels = np.repeat(np.arange(identities), counts)
    out = np.empty((len(labels), model.dim), np.float32)
    step = 65536
    for s in range(0, identities, step):
        ids = np.arange(s, min(identities, s + step))
        centres = model.mean + rng.standard_normal((len(ids), model.dim)) @ model.between.T
        rows = np.flatnonzero((labels >= ids[0]) & (labels <= ids[-1]))
        x = centres[labels[rows] - ids[0]] + rng.standard_normal((len(rows), model.dim)) @ model.within.T
        out[rows] = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return out, labels


def nn_similarity(probes: np.ndarray, gallery: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Each probe's highest cosine similarity in the gallery."""
    best = np.full(len(probes), -np.inf, np.float32)
    for s in range(0, len(gallery), chunk):
        best = np.maximum(best, (probes @ np.asarray(gallery[s : s + chunk]).T).max(axis=1))
    return best


def compare(
    real: np.ndarray,
    real_labels: np.ndarray,
    synth: np.ndarray,
    synth_labels: np.ndarray,
    probes: np.ndarray,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Quantiles of the similarities an index sees, for real and synthetic embeddings side by side.

    ``probes`` are real embeddings of people in neither gallery; both galleries have the same size.
    """
    rng = np.random.default_rng(seed)
    qs = (5, 25, 50, 75, 95)

    def quant(x: np.ndarray) -> dict[str, float]:
        return {f"p{q}": round(float(np.percentile(x, q)), 4) for q in qs}

    def pairs(v: np.ndarray, lab: np.ndarray, same: bool, n: int = 20000) -> np.ndarray:
        if same:
            order = np.argsort(lab, kind="stable")
            a, b = order[:-1], order[1:]
            keep = lab[a] == lab[b]
            a, b = a[keep], b[keep]
        else:
            a, b = rng.integers(0, len(v), n), rng.integers(0, len(v), n)
            keep = lab[a] != lab[b]
            a, b = a[keep], b[keep]
        return np.einsum("ij,ij->i", v[a], v[b])

    n = min(len(real), len(synth))
    return {
        "nn_similarity_real": quant(nn_similarity(probes, real[:n])),
        "nn_similarity_synthetic": quant(nn_similarity(probes, synth[:n])),
        "impostor_real": quant(pairs(real, real_labels, False)),
        "impostor_synthetic": quant(pairs(synth, synth_labels, False)),
        "genuine_real": quant(pairs(real, real_labels, True)),
        "genuine_synthetic": quant(pairs(synth, synth_labels, True)),
    }
