"""``edgeface bench pipeline --source``: the daemon's pipeline on a looped video, sampled over time."""

from __future__ import annotations

from pathlib import Path

from edgeface.bench import stream
from edgeface.config import load_config


def test_stream_bench_runs_the_daemon_and_reports_memory(lfw_root: Path, tmp_path: Path) -> None:
    video = tmp_path / "grid.avi"
    info = stream.synthetic_video(lfw_root, video, frames=40, change_every=20)
    enroll = info.pop("_enroll")
    assert info["faces_per_frame"] == 4 and video.stat().st_size > 0
    # a 1 s dedup window: frames count as processed when their tracks close
    config = load_config(None, env={}, overrides=["logging.level=warning", "dedup.window_s=1"])
    out = stream.run_stream(config, video, threads=[1], duration_s=4.0, warmup_s=3.0, sample_every_s=1.0, enroll=enroll)
    run = out["threads"]["1"]
    assert run["frames"] > 0 and run["faces"] >= 3 * run["frames"]  # four LFW faces per frame, nearly all found
    assert run["frames_per_s"] > 0 and run["cpu_percent"] > 0
    assert sum(run["results"].values()) >= 1 and run["results"].get("match", 0) >= 1  # enrolled people matched
    samples = run["samples"]
    assert len(samples) >= 3 and [s["t"] for s in samples] == sorted(s["t"] for s in samples)
    assert all(s["rss_mb"] > 0 and s["sqlite_mb"] is not None and s["sqlite_mb"] > 0 for s in samples)
    assert run["window_rss_mb"] == [samples[0]["rss_mb"], samples[-1]["rss_mb"]]  # run shorter than the window
    assert run["window_s"] > 0
