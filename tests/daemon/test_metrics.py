"""The unit's /metrics by Prometheus' rules: scraped from a running `edgeface run` and parsed with
prometheus_client's own text parser; counters count, stage histograms fill, build_info and process_*."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import edgeface_child, wait_child
from prometheus_client.parser import text_string_to_metric_families
from sample_photos import SAMPLE_PHOTOS, feed

import edgeface.daemon
from edgeface.config import Config
from edgeface.daemon.metrics import METRICS, STAGES, Metrics
from edgeface.testing.broker import free_port

MakeUnit = Callable[..., tuple[Config, Path]]
DAEMON = Path(edgeface.daemon.__file__).parent


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(fams: dict[str, Any], sample: str, **labels: str) -> float:
    """The value of one sample (e.g. ``edgeface_stage_duration_seconds_count``) with exactly ``labels``."""
    for fam in fams.values():
        for s in fam.samples:
            if s.name == sample and {k: v for k, v in s.labels.items()} == labels:
                return float(s.value)
    raise AssertionError(f"no sample {sample}{labels}")


def scrape(port: int) -> dict[str, Any]:
    return families(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode())


def test_each_metrics_has_its_own_registry_and_counters_only_go_up() -> None:
    a, b = Metrics(), Metrics()
    a.inc("edgeface_frames_processed_total", 3)
    a.observe("detect", 0.02)
    fa, fb = families(a.render()), families(b.render())
    assert value(fa, "edgeface_frames_processed_total") == 3 and value(fb, "edgeface_frames_processed_total") == 0
    assert value(fa, "edgeface_stage_duration_seconds_count", stage="detect") == 1
    assert value(fb, "edgeface_stage_duration_seconds_count", stage="detect") == 0
    with pytest.raises(ValueError, match="is a counter"):
        a.set("edgeface_frames_processed_total", 1)
    with pytest.raises(ValueError, match="only goes up"):
        a.inc("edgeface_frames_processed_total", -1)


def test_no_rate_gauges_and_no_home_made_process_metrics() -> None:
    fams = families(Metrics().render())
    gone = {"edgeface_frames_per_second", "edgeface_faces_per_second", "edgeface_errors_last_hour"}
    assert not gone & set(fams) and not any(n.startswith("edgeface_process_") for n in fams)
    for name, (kind, _, _) in METRICS.items():
        if kind == "counter":
            assert name.endswith("_total"), name
    assert fams["process_cpu_seconds"].type == "counter"  # the parser strips _total from a counter's name
    assert fams["process_resident_memory_bytes"].type == "gauge"


def test_every_metric_the_daemon_updates_is_declared() -> None:
    """A name missing from METRICS would be counted and never exported; a counter is never set."""
    source = "".join(p.read_text() for p in DAEMON.glob("*.py"))
    incremented = set(re.findall(r'\.inc\(\s*"(edgeface_\w+)"', source))
    assigned = set(re.findall(r'\.set\(\s*"(edgeface_\w+)"', source))
    assert len(incremented | assigned) >= 20
    assert incremented | assigned <= set(METRICS), (incremented | assigned) - set(METRICS)
    assert all(METRICS[n][0] == "counter" for n in incremented)
    assert all(METRICS[n][0] == "gauge" for n in assigned)


def test_running_unit_metrics_count_and_time_its_stages(make_unit: MakeUnit, tmp_path: Path) -> None:
    port = free_port()
    config, path = make_unit(status={"metrics_port": port, "interval_s": 0.2})
    inbox = Path(config.capture.folder.path)
    first, rest = SAMPLE_PHOTOS[:2], SAMPLE_PHOTOS[2:]
    feed(inbox, first)
    child = edgeface_child(["--config", str(path), "run"], tmp_path / "run.log")
    child.start()

    def processed() -> float:
        try:
            return value(scrape(port), "edgeface_frames_processed_total")
        except OSError:
            return -1.0  # not listening yet

    try:
        assert wait_child(child, lambda: processed() == len(first), 90), child.log_tail()
        before = scrape(port)
        assert before["edgeface_frames_processed"].type == "counter"
        assert before["edgeface_stage_duration_seconds"].type == "histogram"
        assert before["edgeface_queue_depth"].type == "gauge"
        (build,) = before["edgeface_build_info"].samples  # an info metric is a gauge of 1 in the text format
        assert before["edgeface_build_info"].type == "gauge" and build.value == 1 and build.labels["version"]
        assert value(before, "edgeface_up") == 1
        assert "process_cpu_seconds" in before and "process_resident_memory_bytes" in before
        for stage in STAGES:  # every stage is exported from the start, timed or not
            value(before, "edgeface_stage_duration_seconds_count", stage=stage)
        assert value(before, "edgeface_stage_duration_seconds_count", stage="detect") == len(first)
        assert value(before, "edgeface_stage_duration_seconds_count", stage="capture") == len(first)  # decodes
        faces0 = sum(
            value(before, "edgeface_faces_total", verdict=v)
            for v in ("passed", "refused")
            if any(s.labels.get("verdict") == v for s in before["edgeface_faces"].samples)
        )
        assert faces0 >= len(first)
        assert value(before, "edgeface_stage_duration_seconds_count", stage="quality") == faces0

        feed(inbox, rest, names=[f"9{i:02d}-{p.name}" for i, p in enumerate(rest)])
        total = len(first) + len(rest)
        assert wait_child(child, lambda: processed() == total, 90), child.log_tail()
        after = scrape(port)
        assert value(after, "edgeface_stage_duration_seconds_count", stage="detect") == total
        assert value(after, "edgeface_stage_duration_seconds_sum", stage="detect") > value(
            before, "edgeface_stage_duration_seconds_sum", stage="detect"
        )
        assert value(after, "edgeface_stage_duration_seconds_count", stage="embed") > value(
            before, "edgeface_stage_duration_seconds_count", stage="embed"
        )
        results = sum(s.value for s in after["edgeface_results"].samples if s.name == "edgeface_results_total")
        enqueued = value(after, "edgeface_stage_duration_seconds_count", stage="outbox_enqueue")
        assert results == enqueued >= 1
        le_inf = value(after, "edgeface_stage_duration_seconds_bucket", stage="detect", le="+Inf")
        assert le_inf == total  # cumulative buckets end at the count
        assert value(after, "process_cpu_seconds_total") >= value(before, "process_cpu_seconds_total")
        assert child.stop(60) == 0
    finally:
        child.kill()
