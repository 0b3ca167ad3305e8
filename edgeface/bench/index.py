"""``edgeface bench index``: the gallery index at 10k, 100k and 1M entries, and the delta transfer.

Gallery = real LFW embeddings (minus the probes) plus synthetic distractors drawn from a two-level
Gaussian fitted to those same embeddings (see distractors.py; the fit is checked by comparing the
similarity distributions an index sees). Probes = one held-out image of every LFW person with 2+
images (mated: their other images are in the gallery) and people with one image, held out entirely
(non-mated: their nearest neighbour is a stranger, the hard case for an approximate index).

Query latency is measured in a child process pinned to one CPU core with one BLAS thread, after the
gallery is opened from disk exactly as a unit opens it (memory-mapped vectors and index): wall-clock
time, and the CPU time the query thread used (what it costs on a core of its own: on a shared, loaded
machine the wall-clock tail mostly measures waiting for the core). RSS is that process's resident memory
after the queries. recall@1 is the fraction of probes whose top row equals
the exact (brute-force) nearest neighbour.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config
from ..evaluation.distractors import EmbeddingModel, compare, fit, sample
from . import report

Wrap = Callable[[Iterable[Any]], Iterable[Any]]


def real_split(config: Config, root: Path, wrap: Wrap, non_mated: int = 1000, seed: int = 0) -> dict[str, np.ndarray]:
    """LFW embeddings split into gallery rows and probes (see the module docstring)."""
    from ..evaluation.embeddings import lfw_embeddings
    from ..evaluation.lfw import all_images

    paths = all_images(root)
    emb = lfw_embeddings(config, paths, wrap=wrap)
    people = np.array([p.parent.name for p in paths])
    ok = emb.found
    vectors, people = emb.vectors[ok], people[ok]
    names, inv, counts = np.unique(people, return_inverse=True, return_counts=True)
    rng = np.random.default_rng(seed)
    first: dict[int, int] = {}
    for i, p in enumerate(inv):
        first.setdefault(int(p), i)
    mated = np.array([first[p] for p in range(len(names)) if counts[p] >= 2])
    singles = np.array([first[p] for p in range(len(names)) if counts[p] == 1])
    held = rng.choice(singles, min(non_mated, len(singles)), replace=False)
    probe = np.concatenate([mated, held])
    mask = np.ones(len(vectors), bool)
    mask[probe] = False
    return {
        "gallery": vectors[mask],
        "gallery_labels": inv[mask],
        "probes": vectors[probe],
        "mated": np.isin(probe, mated),
    }


def make_gallery(real: np.ndarray, size: int, model: EmbeddingModel, seed: int) -> tuple[np.ndarray, int]:
    """``size`` rows: real ones first, then distractor identities of 1-3 images each. Returns (vectors, real)."""
    n_real = min(size, len(real))
    if n_real == size:
        return np.ascontiguousarray(real[:size]), n_real
    need = size - n_real
    synth, _ = sample(model, int(need / 2 * 1.05) + 10, (1, 3), seed=seed)
    return np.concatenate([real[:n_real], synth[:need]]).astype(np.float32), n_real


def _write(out: Path, vectors: np.ndarray) -> tuple[float, int]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ..gallery.bundle import write_bundle
    from ..gallery.manifest import EmbedderRef

    n = len(vectors)
    entries = [{"identity": f"p{i}", "image": f"{i:064x}", "source": "bench"} for i in range(n)]
    ids = [{"id": f"p{i}", "name": f"p{i}"} for i in range(n)]
    t = time.perf_counter()
    m = write_bundle(
        out,
        vectors=vectors,
        entries=entries,
        identities=ids,
        version=1,
        embedder=EmbedderRef("bench", "0" * 64, vectors.shape[1]),
        thresholds={"cosine": 0.5},
        signer=Ed25519PrivateKey.generate(),
    )
    return time.perf_counter() - t, m.total_bytes


QUERY_CHILD = """
import json, os, sys, time
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
import numpy as np
from pathlib import Path
from edgeface.bench.report import current_rss_mb, percentiles
from edgeface.gallery.index import VectorIndex, plan_for
d, queries, exact_max = Path(sys.argv[1]), np.load(sys.argv[2]), int(sys.argv[3])
rss0 = current_rss_mb()
vectors = np.load(d / "vectors.npy", mmap_mode="r")
m = json.loads((d / "manifest.json").read_text())
plan = plan_for(len(vectors), exact_max=exact_max, trees=m["index"]["trees"])
idx = VectorIndex(vectors, d / "index.ann", plan, np.load(d / "projection.npy"))
for q in queries[:20]:
    idx.search(q, 1)  # warm the page cache paths a running unit has warm
lat, cpu, top, score = [], [], [], []
for q in queries:
    t, c = time.perf_counter(), time.thread_time()
    rows, s = idx.search(q, 1)
    lat.append((time.perf_counter() - t) * 1000)
    cpu.append((time.thread_time() - c) * 1000)
    top.append(int(rows[0]))
    score.append(float(s[0]))
print(json.dumps({"load_average": os.getloadavg()[0], "top": top, "score": score, "latency": percentiles(lat, (50, 99)),
                  "cpu": percentiles(cpu, (50, 99)), "rss_mb": current_rss_mb(),
                  "rss_before_open_mb": rss0, "plan": plan.to_dict()}))
"""


def measure_queries(bundle: Path, queries: np.ndarray, exact_max: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        qpath = Path(tmp) / "q.npy"
        np.save(qpath, queries)
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        p = subprocess.run(
            [sys.executable, "-c", QUERY_CHILD, str(bundle), str(qpath), str(exact_max)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if p.returncode != 0:
            raise RuntimeError(f"query process failed: {p.stderr[-2000:]}")
        return json.loads(p.stdout.strip().splitlines()[-1])


def run(
    config: Config, root: Path, sizes: list[int], workdir: Path, wrap: Wrap, exact_compare: bool = True
) -> dict[str, Any]:
    from ..gallery.index import EXACT_MAX, exact_top1

    split = real_split(config, root, wrap)
    model = fit(split["gallery"], split["gallery_labels"])
    n_real = len(split["gallery"])
    synth, synth_labels = sample(model, n_real // 2, (1, 3), seed=1)
    check = compare(
        split["gallery"],
        split["gallery_labels"],
        synth[:n_real],
        synth_labels[:n_real],
        split["probes"][~split["mated"]],
    )
    queries = split["probes"].astype(np.float32)
    rows = []
    for size in sizes:
        out = workdir / f"index-{size}"
        shutil.rmtree(out, ignore_errors=True)
        vectors, real_rows = make_gallery(split["gallery"], size, model, seed=size)
        build_s, disk = _write(out, vectors)
        truth, truth_score = exact_top1(vectors, queries)
        modes = [("auto", EXACT_MAX)]
        if size <= EXACT_MAX:
            modes.append(("annoy", 0))  # show what the index would do at this size
        elif exact_compare:
            modes.append(("exact", 10**12))
        del vectors
        for mode, exact_max in modes:
            q = queries if mode != "exact" else queries[:300]
            r = measure_queries(out, q, exact_max)
            # a hit is the exact nearest row, or another row exactly as near (LFW holds duplicate images)
            hit = (np.asarray(r["top"]) == truth[: len(q)]) | (np.asarray(r["score"]) >= truth_score[: len(q)] - 1e-6)
            mated = split["mated"][: len(q)]
            recall = float(np.mean(hit))
            rows.append(
                {
                    "size": size,
                    "real_rows": real_rows,
                    "mode": mode,
                    "search": "exact scan"
                    if r["plan"]["exact"]
                    else f"annoy {r['plan']['trees']} trees, search_k {r['plan']['search_k']}",
                    "build_s": round(build_s, 1),
                    "disk_mb": round(disk / 2**20, 1),
                    "rss_mb": r["rss_mb"],
                    "p50_ms": r["latency"]["p50"],
                    "p99_ms": r["latency"]["p99"],
                    "recall_at_1": round(recall, 4),
                    "queries": len(q),
                    "cpu_p50_ms": r["cpu"]["p50"],
                    "cpu_p99_ms": r["cpu"]["p99"],
                    "machine_load_1min": round(r["load_average"], 2),
                    "recall_mated": round(float(np.mean(hit[mated])), 4) if mated.any() else None,
                    "recall_non_mated": round(float(np.mean(hit[~mated])), 4) if (~mated).any() else None,
                }
            )
        shutil.rmtree(out, ignore_errors=True)
    return {
        "probes": {"mated": int(split["mated"].sum()), "non_mated": int((~split["mated"]).sum())},
        "real_gallery_rows": n_real,
        "distractor_check": check,
        "rows": rows,
    }


def run_delta(config: Config, root: Path, size: int, fraction: float, workdir: Path, wrap: Wrap) -> dict[str, Any]:
    """Publish ``size`` entries, then remove and add ``fraction`` of them; sync a unit over loopback HTTP."""
    import secrets
    import threading

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ..gallery.crypto import DeviceKey
    from ..gallery.manifest import EmbedderRef
    from ..gallery.publish import publish
    from ..gallery.serve import make_gallery_server
    from ..gallery.store import GalleryStore
    from ..gallery.sync import sync_once

    split = real_split(config, root, wrap)
    model = fit(split["gallery"], split["gallery_labels"])
    vectors, _ = make_gallery(split["gallery"], size, model, seed=size)
    k = int(size * fraction)
    new, _ = sample(model, k, 1, seed=size + 1)

    def entries(n0: int, n: int) -> list[dict[str, Any]]:
        return [
            {
                "identity": f"p{i}",
                "image": f"{i:064x}",
                "source": "bench",
                "consent": "research set",
                "enrolled_by": "bench",
                "enrolled_at": "2025-01-01T00:00:00Z",
            }
            for i in range(n0, n0 + n)
        ]

    e1 = entries(0, size)
    e2 = e1[k:] + entries(size, k)
    v2 = np.concatenate([vectors[k:], new])
    key = Ed25519PrivateKey.generate()
    emb = EmbedderRef("bench", "0" * 64, vectors.shape[1])
    pub = workdir / "delta-publish"
    shutil.rmtree(pub, ignore_errors=True)
    shutil.rmtree(workdir / "delta-unit", ignore_errors=True)
    ids = lambda es: [{"id": e["identity"], "name": e["identity"]} for e in es]  # noqa: E731
    p1 = publish(
        pub, vectors=vectors, entries=e1, identities=ids(e1), embedder=emb, thresholds={"cosine": 0.5}, signer=key
    )
    server = make_gallery_server(pub, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/"
        unit = GalleryStore(
            workdir / "delta-unit",
            trusted=[key.public_key()],
            key=DeviceKey(secrets.token_bytes(32), "bench"),
            embedder_sha256="0" * 64,
        )
        full = sync_once(unit, url)
        t = time.perf_counter()
        p2 = publish(
            pub, vectors=v2, entries=e2, identities=ids(e2), embedder=emb, thresholds={"cosine": 0.5}, signer=key
        )
        publish_s = time.perf_counter() - t
        t = time.perf_counter()
        delta = sync_once(unit, url)
        apply_s = time.perf_counter() - t
    finally:
        server.shutdown()
        server.server_close()
    shutil.rmtree(pub, ignore_errors=True)
    shutil.rmtree(workdir / "delta-unit", ignore_errors=True)
    spec = p2.deltas[1]
    return {
        "size": size,
        "removed": k,
        "added": k,
        "full_bundle_bytes": p2.manifest.total_bytes,
        "delta_bytes": spec.total_bytes,
        "delta_fraction": round(spec.total_bytes / p2.manifest.total_bytes, 5),
        "unit_full_download_bytes": full.downloaded_bytes,
        "unit_delta_download_bytes": delta.downloaded_bytes,
        "unit_download_fraction": round(delta.downloaded_bytes / max(1, full.downloaded_bytes), 5),
        "unit_via": delta.via,
        "unit_version": delta.installed,
        "publish_s": round(publish_s, 1),
        "unit_sync_and_apply_s": round(apply_s, 1),
        "v1_bytes": p1.manifest.total_bytes,
        "peak_rss_mb": report.rss_mb(),
    }
