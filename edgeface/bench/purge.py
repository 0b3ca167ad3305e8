"""``edgeface bench purge``: how long a retention purge holds the central database, and what it costs.

Method: a fresh server database (SQLite in the work folder, or ``--database-url``) is filled with
``results`` results that each carry a face crop of about ``crop_bytes`` (a noise JPEG: it does not
compress, as a real face crop barely does), received 60 days ago: 80% undecided (due under
``results_days = 30``), 10% confirmed (kept), 10% received 10 days ago (only their crop is due under
``crops_days = 7``). Then the dry run (:func:`edgeface.server.retention.plan`, read only) and one purge
(:func:`edgeface.server.retention.purge`, export first, one transaction) are timed. On SQLite the purge's
batches run one after another as ``edgeface server purge`` runs them, and the longest batch is how long
ingest waits for the write lock at most; ``server.retention.batch`` bounds it.
Afterwards the run is checked: what the policy keeps is all still there, and nothing due is left.
"""

from __future__ import annotations

import io
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import EdgefaceError


def noise_crop(crop_bytes: int, rng: random.Random) -> dict[str, Any]:
    """A ``crop`` object whose JPEG is about ``crop_bytes`` (noise, which JPEG cannot shrink much)."""
    import base64

    import numpy as np
    from PIL import Image

    side = 24
    gen = np.random.default_rng(rng.randrange(2**32))
    while True:
        img = Image.fromarray(gen.integers(0, 256, (side, side, 3), dtype=np.uint8))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=85)
        if buf.tell() >= crop_bytes or side >= 1024:
            break
        side = int(side * 1.15) + 1
    return {"format": "jpeg", "width": side, "height": side, "data": base64.b64encode(buf.getvalue()).decode()}


def _rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def run_purge_bench(
    workdir: Path, *, results: int, crop_bytes: int, batch: int, database_url: str | None = None
) -> dict[str, Any]:
    """Fill, dry-run, purge and check; returns the figures."""
    from sqlalchemy import func, select

    from ..server import retention
    from ..server.db import Database
    from ..server.ingest import DbResultStore
    from ..server.tables import results as results_table
    from ..testing.mqttload import sample_result

    workdir.mkdir(parents=True, exist_ok=True)
    db = Database(database_url or f"sqlite:///{workdir / 'server.sqlite3'}")
    try:
        db.migrate()
        with db.read() as conn:
            if conn.execute(select(func.count()).select_from(results_table)).scalar_one():
                raise EdgefaceError("bench purge needs an empty results table: give it a fresh database")
        rng = random.Random(5)
        crop = noise_crop(crop_bytes, rng)
        store, now = DbResultStore(db), time.time()
        kinds = {"due": int(results * 0.8), "confirmed": int(results * 0.1)}
        kinds["crop_only"] = results - kinds["due"] - kinds["confirmed"]
        confirmed: list[str] = []
        t0 = time.monotonic()
        for kind, n in kinds.items():
            age = 10 if kind == "crop_only" else 60
            for start in range(0, n, 1000):
                docs = [sample_result("bench-unit", rng, crop=crop) for _ in range(min(1000, n - start))]
                store.add(docs, received_at=now - age * 86400)
                if kind == "confirmed":
                    confirmed += [d["id"] for d in docs]
        with db.write() as conn:
            for i in range(0, len(confirmed), 500):
                conn.execute(
                    results_table.update()
                    .where(results_table.c.id.in_(confirmed[i : i + 500]))
                    .values(review_status="confirmed", reviewed_at=now - 50 * 86400)
                )
        fill_s = time.monotonic() - t0
        rss_before = _rss_mb()
        policy = retention.Policy(results_days=30, crops_days=7)
        t0 = time.monotonic()
        with db.read() as conn:
            plan = retention.plan(conn, policy, limit=2**62)  # the dry run lists everything due
        dry_s = time.monotonic() - t0
        reports: list[retention.Report] = []
        holds: list[float] = []
        while not reports or reports[-1].plan.more:  # as `edgeface server purge` does, batch by batch
            t0 = time.monotonic()
            reports.append(retention.purge(db, policy, export_dir=workdir / "exports", limit=batch))
            holds.append(time.monotonic() - t0)
        purge_s = sum(holds)
        export_bytes = sum(f.stat().st_size for r in reports if r.export for f in r.export.iterdir())
        with db.read() as conn:
            left = conn.execute(select(results_table.c.review_status, func.count()).group_by("review_status")).all()
            stripped = conn.execute(
                select(func.count()).where(results_table.c.crop_purged_at.is_not(None))
            ).scalar_one()
    finally:
        db.dispose()
    counts = {str(s): int(n) for s, n in left}
    deleted = sum(len(r.plan.results) for r in reports)
    crops = sum(len(r.plan.crops) for r in reports)
    ok = (
        counts == {"confirmed": kinds["confirmed"], "pending": kinds["crop_only"]}
        and deleted == kinds["due"]
        and crops == kinds["crop_only"] == stripped
        and len(reports) == max(1, -(-kinds["due"] // batch))
    )
    return {
        "backend": db.url.get_backend_name(),
        "results": results,
        "crop_bytes": len(crop["data"]) * 3 // 4,
        "batch": batch,
        "fill_s": round(fill_s, 2),
        "dry_run_s": round(dry_s, 3),
        "dry_run_due": len(plan.results),
        "purge_s": round(purge_s, 3),
        "batches": len(reports),
        "longest_batch_s": round(max(holds), 3),
        "deleted": deleted,
        "crops_removed": crops,
        "deleted_per_s": round(deleted / purge_s, 1) if purge_s else None,
        "export_mb": round(export_bytes / 1e6, 2),
        "rss_before_mb": round(rss_before, 1),
        "peak_rss_mb": round(_rss_mb(), 1),
        "checked": ok,
    }
