"""``edgeface bench pipeline --source VIDEO --duration S``: the daemon's sustained throughput on a stream.

The real pipeline (:class:`~edgeface.daemon.Daemon`: OpenCV source, inference workers, matching against a
gallery, track/dedup, SQLite outbox) runs in this process on a video file read in a loop (a file is not
live: every frame is processed, none dropped, so frames/s is what the unit sustains). Sampled every
``sample_every_s``: frames and faces processed, CPU time, RSS. Reported: sustained frames/s and faces/s
after a warm-up, CPU use (100 % = one core busy), and RSS over time (a leak shows as growth).

``--source synthetic`` writes the stream first: a grid of LFW photos per frame (several faces each),
shifting a little from frame to frame, the people changing every few seconds. The video lives in a
temporary folder and is deleted afterwards (LFW stays out of the repository).
"""

from __future__ import annotations

import dataclasses
import random
import resource
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..config import Config, load_config
from ..evaluation.lfw import people
from .report import current_rss_mb, sqlite_memory_mb

TILE = 250  # LFW images are 250 x 250


def synthetic_video(
    lfw_root: Path,
    path: Path,
    *,
    frames: int = 600,
    fps: int = 10,
    grid: int = 2,
    change_every: int = 50,
    seed: int = 0,
) -> dict[str, Any]:
    """Write an MJPG AVI of ``grid`` x ``grid`` LFW faces per frame; returns the people shown and their images."""
    rng = random.Random(seed)
    everyone = people(lfw_root)
    names = sorted(everyone)
    size = grid * TILE + 40
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (size, size))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path} (OpenCV without an MJPG writer?)")
    shown: dict[str, Path] = {}
    tiles: list[np.ndarray] = []
    for i in range(frames):
        if i % change_every == 0:
            chosen = rng.sample(names, grid * grid)
            tiles = []
            for n in chosen:
                img = rng.choice(everyone[n])
                shown.setdefault(n, everyone[n][0])
                tile = cv2.imread(str(img))
                if tile is None:
                    raise RuntimeError(f"cannot read {img}")
                tiles.append(tile)
        canvas = np.full((size, size, 3), 40, np.uint8)
        dx, dy = int(20 + 15 * np.sin(i / 7)), int(20 + 15 * np.cos(i / 9))  # a little motion
        for k, tile in enumerate(tiles):
            r, c = divmod(k, grid)
            y, x = r * TILE + dy, c * TILE + dx
            canvas[y : y + TILE, x : x + TILE] = tile[: size - y, : size - x]
        writer.write(canvas)
    writer.release()
    return {
        "frames": frames,
        "fps": fps,
        "faces_per_frame": grid * grid,
        "people": len(shown),
        "size": [size, size],
        "_enroll": shown,
    }


def _unit_config(base: Config, work: Path, video: Path, threads: int, workers: int, trusted: Path | None) -> Config:
    """The benchmark unit: base settings (models, quality, runtime) with the stream as its camera."""
    sets = [
        "capture.source=opencv",
        f"capture.opencv.device={video}",
        "capture.opencv.loop=true",
        "capture.fps=0",
        f"runtime.num_threads={threads}",
        f"run.workers={workers}",
        f"run.state_dir={work / 'state'}",
        f"outbox.path={work / 'outbox.sqlite3'}",
        f"gallery.dir={work / 'gallery'}",
        "gallery.encrypt=false",
        f"retention.dir={work / 'media'}",
        "status.metrics_port=0",
        "status.interval_s=1",
        "device.id=bench-unit",
        "mqtt.host=",
        "gallery.sync_url=",
        "outbox.max_results=10000000",
        "outbox.max_bytes=4294967296",
        "logging.level=warning",
    ]
    if trusted is not None:
        sets.append(f'gallery.trusted_keys=["{trusted}"]')
    cfg = load_config(None, env={}, overrides=sets)
    # keep the caller's model, detection, quality and embedding settings
    return dataclasses.replace(
        cfg,
        models=base.models,
        detect=base.detect,
        quality=base.quality,
        align=base.align,
        embed=base.embed,
        dedup=base.dedup,
    )


def _gallery(config: Config, work: Path, images: dict[str, Path]) -> Path:
    """Enroll one image per person shown, publish, install into the unit's store; returns the trusted key."""
    from ..gallery import signing
    from ..gallery.enroll import EnrollItem, Workspace, enroll, settings_key
    from ..gallery.publish import publish_for
    from ..gallery.store import GalleryStore
    from ..vision.engine import Engine

    engine = Engine(config)
    card = engine.embedder_card
    ws = Workspace(work / "workspace")
    enroll(engine, ws, [EnrollItem(n, p, "LFW benchmark", "LFW", "bench", n) for n, p in sorted(images.items())])
    vectors, entries, identities = ws.content(settings_key(engine, config.enroll.second_face_ratio))
    ws.close()
    signing.generate_keypair(work / "k.pem", work / "k.pub")
    pub = publish_for(
        work / "publish",
        card,
        vectors=vectors,
        entries=entries,
        identities=identities,
        signer=signing.load_private_key(work / "k.pem"),
        target_fpir=config.gallery.target_fpir,
    )
    unit = dataclasses.replace(
        config,
        gallery=dataclasses.replace(
            config.gallery, trusted_keys=(work / "k.pub",), dir=work / "gallery", encrypt=False
        ),
    )
    store = GalleryStore.from_config(unit.gallery, unit.models)
    staged = store.staging(pub.manifest.gallery_version)
    for f in pub.dir.iterdir():
        shutil.copyfile(f, staged / f.name)
    store.install(staged)
    return work / "k.pub"


RSS_WINDOW_S = 600.0  # "RSS after 10 minutes": its change over the run's last 10 minutes


def _last_window(samples: list[dict[str, Any]], window_s: float) -> dict[str, Any]:
    """RSS and SQLite heap at the start and end of the last ``window_s`` of the run (the whole run if shorter).

    SQLite's page caches fill as the outbox file grows and then hold (``outbox.cache_kib`` per connection),
    so growth in the first minutes that the SQLite column accounts for is a cache filling, not a leak.
    """
    end = samples[-1]
    start = next((s for s in samples if s["t"] >= end["t"] - window_s - 1e-6), samples[0])
    return {
        "window_s": round(end["t"] - start["t"], 1),
        "window_rss_mb": [start["rss_mb"], end["rss_mb"]],
        "window_sqlite_mb": [start["sqlite_mb"], end["sqlite_mb"]],
    }


def _snap(daemon: Any, t0: float) -> dict[str, Any]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "t": round(time.monotonic() - t0, 1),
        "rss_mb": current_rss_mb(),
        "sqlite_mb": sqlite_memory_mb(),
        "cpu_s": round(ru.ru_utime + ru.ru_stime, 2),
        "frames": int(daemon.metrics.total("edgeface_frames_processed_total")),
        "faces": int(daemon.metrics.total("edgeface_faces_total")),
    }


def run_stream(
    config: Config,
    video: Path,
    *,
    threads: list[int],
    workers: int = 1,
    duration_s: float = 60.0,
    warmup_s: float = 10.0,
    sample_every_s: float = 10.0,
    enroll: dict[str, Path] | None = None,
    progress: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    from ..daemon import Daemon

    out: dict[str, Any] = {
        "video": str(video),
        "duration_s": duration_s,
        "warmup_s": warmup_s,
        "workers": workers,
        "threads": {},
    }
    for t in threads:
        with tempfile.TemporaryDirectory(prefix="edgeface-stream-") as tmp:
            work = Path(tmp)
            trusted = _gallery(config, work, enroll) if enroll else None
            cfg = _unit_config(config, work, video, t, workers, trusted)
            daemon = Daemon(cfg, install_signals=False)
            runner = threading.Thread(target=daemon.run, name="bench-daemon")
            samples: list[dict[str, Any]] = []
            t0 = time.monotonic()
            runner.start()

            next_sample = warmup_s
            while time.monotonic() - t0 < warmup_s + duration_s and runner.is_alive():
                time.sleep(max(0.0, min(1.0, t0 + next_sample - time.monotonic())))
                if time.monotonic() - t0 >= next_sample:
                    s = _snap(daemon, t0)
                    samples.append(s)
                    progress(f"threads {t}: {s['t']:.0f} s, {s['frames']} frames, RSS {s['rss_mb']} MiB")
                    next_sample += sample_every_s
            end = _snap(daemon, t0)
            daemon.request_stop("benchmark over")
            runner.join(120)
        first = samples[0] if samples else end
        span = end["t"] - first["t"]
        timeline = samples + [end] if not samples or end["t"] > samples[-1]["t"] else samples
        out["threads"][str(t)] = {
            "frames_per_s": round((end["frames"] - first["frames"]) / span, 2) if span > 0 else None,
            "faces_per_s": round((end["faces"] - first["faces"]) / span, 2) if span > 0 else None,
            "cpu_percent": round(100 * (end["cpu_s"] - first["cpu_s"]) / span, 1) if span > 0 else None,
            "rss_mb_start": first["rss_mb"],
            "rss_mb_end": end["rss_mb"],
            **_last_window(timeline, RSS_WINDOW_S),
            "frames": end["frames"],
            "faces": end["faces"],
            "results": daemon.summary.results,
            "faces_merged": daemon.summary.merged,
            "samples": timeline,
        }
    return out
