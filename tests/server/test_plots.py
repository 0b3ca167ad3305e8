"""The plots page: figures from the database drawn as SVG (data -> SVG). Each chart is parsed as XML (so
an unescaped name would break it) and read back by its bars' counts and the threshold line's place."""

from __future__ import annotations

import json
import re
import time
import xml.etree.ElementTree as ET
from typing import Any

from sqlalchemy import delete, insert, update

from edgeface.mqtt import payloads
from edgeface.server import plots
from edgeface.server.db import Database
from edgeface.server.ingest import DbResultStore
from edgeface.server.plots import data, svg
from edgeface.server.tables import devices, publications, results, reviews

from .conftest import Browser, make_user
from .test_migrations import postgres  # noqa: F401  (the module's PostgreSQL cluster fixture)

NS = "{http://www.w3.org/2000/svg}"
DAY = 86400


def parse(s: str) -> ET.Element:
    return ET.fromstring(s)


def bars(root: ET.Element) -> list[ET.Element]:
    return [r for r in root.iter(NS + "rect") if "bar" in r.get("class", "").split()]


def svgs_of(html: str, section: str) -> list[ET.Element]:
    m = re.search(rf'<section[^>]*id="{section}".*?</section>', html, re.S)
    assert m, f"no section {section}"
    return [parse(s) for s in re.findall(r"<svg .*?</svg>", m.group(0), re.S)]


def doc(device: str, scores: list[float], *, version: int = 7, at: float | None = None, thr: float = 0.6) -> Any:
    cands = [payloads.Candidate(f"p{i}", s) for i, s in enumerate(scores)]
    return payloads.result_payload(
        device_id=device,
        decision="match" if scores[0] >= thr else "no_match",
        candidates=cands,
        threshold=thr,
        quality={"score": 0.9, "size_px": 100, "sharpness": 50, "yaw": 0, "pitch": 0, "roll": 0},
        gallery_version=version,
        model_id="m",
        captured_at=at,
    )


def review(db: Any, user_id: int, rid: str, verdict: str, identity: str | None = None, at: float | None = None) -> None:
    status = {"confirm": "confirmed", "reject": "rejected", "unknown": "unknown"}[verdict]
    with db.write() as conn:
        conn.execute(
            insert(reviews).values(
                result_id=rid,
                user_id=user_id,
                verdict=verdict,
                identity_id=identity,
                comment="",
                created_at=at or time.time(),
            )
        )
        conn.execute(update(results).where(results.c.id == rid).values(review_status=status))


# -- svg.py and data.py alone ---------------------------------------------------------------------------


def test_threshold_line_sits_on_the_bin_edge_of_its_value() -> None:
    edges = data.bins([[0.1, 0.95]], 0.6)
    assert edges[0] == 0.0 and edges[-1] >= 1.0 and 0.6 in edges
    chart = parse(
        svg.histogram(edges, [svg.Series("a", "s-a", [0] * (len(edges) - 1))], title="t", x_label="x", threshold=0.6)
    )
    (line,) = [e for e in chart.iter(NS + "line") if e.get("class") == "threshold"]
    assert line.get("x1") == line.get("x2")
    at_06 = [b for b in bars(chart) if b.get("data-lo") == "0.6000"]
    assert len(at_06) == 1
    # the bar's left edge is 1 px inside its bin
    assert abs(float(at_06[0].get("x", "nan")) - 1 - float(line.get("x1", "nan"))) < 0.01
    # and the line moves with the value
    chart2 = parse(
        svg.histogram(edges, [svg.Series("a", "s-a", [0] * (len(edges) - 1))], title="t", x_label="x", threshold=0.3)
    )
    (line2,) = [e for e in chart2.iter(NS + "line") if e.get("class") == "threshold"]
    assert float(line2.get("x1", "nan")) < float(line.get("x1", "nan"))


def test_bins_cover_scores_outside_0_1_and_counts_fall_in_half_open_bins() -> None:
    edges = data.bins([[-0.12, 1.0]], None)
    assert edges[0] <= -0.12 and edges[-1] > 1.0
    assert data.counts([0.6, 0.6499, 0.65], [0.6, 0.65, 0.7]) == [2, 1]


def test_every_text_is_escaped() -> None:
    evil = '<script>alert("x")</script>&amp;'
    labels = ["2026-11-01", "2026-11-02"]
    out = plots.device_plots(labels, {evil: [1, 2]})
    assert "<script>" not in out[0]
    root = parse(out[0])  # well-formed XML
    assert evil in (root.findtext(NS + "title") or "")
    hb = parse(svg.hbars([evil], [3], title=evil, marked=evil, note=evil))
    assert [b.get("data-label") for b in bars(hb)] == [evil]


def test_stacked_bars_carry_each_count() -> None:
    chart = parse(
        svg.stacked_bars(
            ["d1", "d2"], [svg.Series("yes", "s-y", [3, 0]), svg.Series("no", "s-n", [1, 5])], title="t", y_label="n"
        )
    )
    got = {(b.get("data-label"), b.get("data-series")): int(b.get("data-count", "-1")) for b in bars(chart)}
    assert got == {("d1", "yes"): 3, ("d1", "no"): 1, ("d2", "no"): 5}  # zero segments are not drawn
    heights = {k: float(b.get("height", "0")) for k, b in zip(got, bars(chart), strict=True)}
    assert heights[("d2", "no")] == 5 * heights[("d1", "no")]


# -- the page, from the database ------------------------------------------------------------------------


def seed(db: Any, user_id: int, now: float) -> None:
    """Gallery 7: three confirmed (0.82, 0.70 as the second candidate, 0.64), two rejected (0.66, 0.61),
    four results of yesterday (one marked unknown yesterday); gallery 6 (threshold 0.5): one confirmed.
    Devices: unit-a and unit-c on 7, unit-b on 6; 7 published."""
    rid = user_id
    store = DbResultStore(db)
    confirmed = [doc("unit-a", [0.82, 0.4]), doc("unit-a", [0.71, 0.7]), doc("unit-b", [0.64, 0.2])]
    rejected = [doc("unit-b", [0.66, 0.1]), doc("unit-b", [0.61, 0.1])]
    yesterday = [doc("unit-b", [0.3], at=now - DAY) for _ in range(4)]
    old_version = [doc("unit-a", [0.9], version=6, thr=0.5)]
    store.add(confirmed + rejected + yesterday + old_version)
    review(db, rid, confirmed[0]["id"], "confirm", "p0")
    review(db, rid, confirmed[1]["id"], "confirm", "p1")  # the second candidate: its own score, 0.7
    review(db, rid, confirmed[2]["id"], "confirm", "p0")
    review(db, rid, rejected[0]["id"], "reject")
    review(db, rid, rejected[1]["id"], "reject")
    review(db, rid, yesterday[0]["id"], "unknown", at=now - DAY)
    review(db, rid, old_version[0]["id"], "confirm", "p0")
    with db.write() as conn:
        conn.execute(delete(devices))  # the results made rows for unit-a and unit-b: statuses as units send them
        conn.execute(
            insert(devices).values(device_id="unit-a", status=json.dumps({"gallery_version": 7}), revoked=False)
        )
        conn.execute(
            insert(devices).values(device_id="unit-b", status=json.dumps({"gallery_version": 6}), revoked=False)
        )
        conn.execute(
            insert(devices).values(device_id="unit-c", status=json.dumps({"gallery_version": 7}), revoked=False)
        )
        conn.execute(
            insert(publications).values(
                version=7,
                published_at=now,
                published_by="ada",
                count=1,
                identities=1,
                bytes=1,
                manifest_sha256="0" * 64,
            )
        )


def test_plots_page_from_reviewed_results(app: Any, db: Any, users: Any, as_reviewer: Browser) -> None:
    now = time.time()
    today = int(now // DAY)
    seed(db, users["reviewer"].id, now)

    r = as_reviewer.get("/plots")  # the newest gallery version by default
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert 'option value="7" selected' in html

    (scores,) = svgs_of(html, "plot-scores")
    by_bin: dict[tuple[str | None, str | None], int] = {}
    for b in bars(scores):
        by_bin[(b.get("data-series"), b.get("data-lo"))] = int(b.get("data-count", "-1"))
    assert by_bin[("confirmed", "0.8000")] == 1
    assert by_bin[("confirmed", "0.7000")] == 1  # p1's 0.70, not the top candidate's 0.71
    assert by_bin[("confirmed", "0.6000")] == 1
    assert by_bin[("rejected", "0.6500")] == 1 and by_bin[("rejected", "0.6000")] == 1
    assert sum(v for (s, _), v in by_bin.items() if s == "confirmed") == 3  # version 6's is not counted
    (line,) = [e for e in scores.iter(NS + "line") if e.get("class") == "threshold"]
    assert line.get("data-value") == "0.6000"
    x06 = [
        float(b.get("x", "nan"))
        for b in bars(scores)
        if b.get("data-lo") == "0.6000" and b.get("data-series") == "confirmed"
    ]
    assert abs(x06[0] - 1 - float(line.get("x1", "nan"))) < 0.01

    (outcomes,) = svgs_of(html, "plot-outcomes")
    days = data.day_labels(today - 1, today)
    got = {(b.get("data-label"), b.get("data-series")): int(b.get("data-count", "-1")) for b in bars(outcomes)}
    assert got == {(days[1], "confirmed"): 3, (days[1], "rejected"): 2, (days[0], "unknown"): 1}

    per_device = svgs_of(html, "plot-devices")
    titles = [p.findtext(NS + "title") for p in per_device]
    assert titles == ["unit-b: results per day (UTC)", "unit-a: results per day (UTC)"]  # most results first
    b_counts = {b.get("data-label"): int(b.get("data-count", "-1")) for b in bars(per_device[0])}
    assert b_counts == {days[0]: 4, days[1]: 3}

    (fleet,) = svgs_of(html, "plot-fleet")
    got_fleet = {b.get("data-label"): (int(b.get("data-count", "-1")), b.get("class")) for b in bars(fleet)}
    assert got_fleet == {"version 7": (2, "bar s-marked"), "version 6": (1, "bar s-plain")}

    # gallery 6 alone: its own threshold, its one confirmation
    html6 = as_reviewer.get("/plots?version=6").get_data(as_text=True)
    (scores6,) = svgs_of(html6, "plot-scores")
    assert [e.get("data-value") for e in scores6.iter(NS + "line") if e.get("class") == "threshold"] == ["0.5000"]
    assert sum(int(b.get("data-count", "0")) for b in bars(scores6)) == 1


def test_plots_page_refuses_bad_arguments_and_works_empty(as_reviewer: Browser, as_admin: Browser) -> None:
    assert as_reviewer.get("/plots?version=x").status_code == 400
    assert as_reviewer.get("/plots?days=0").status_code == 400
    assert as_reviewer.get("/plots?days=9999").status_code == 400
    r = as_admin.get("/plots?version=all&days=7")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert "No results in these days." in html and "No device has reported a status yet." in html
    assert 'href="/plots"' in html  # the nav link


def test_plot_figures_on_postgresql(postgres: str) -> None:  # noqa: F811
    """The day buckets (PostgreSQL's integer cast rounds; floor there) and the payload fields read by the
    database's JSON function give PostgreSQL the same figures as SQLite."""
    db = Database(postgres)
    db.migrate()
    try:
        now = time.time()
        today = int(now // DAY)
        seed(db, make_user(db, "rita", "reviewer").id, now)
        with db.read() as conn:
            assert data.versions(conn) == [7, 6]
            dist = data.score_distribution(conn, 7)
            assert sorted(round(v, 2) for v in dist.confirmed) == [0.64, 0.7, 0.82]
            assert sorted(round(v, 2) for v in dist.rejected) == [0.61, 0.66]
            assert dist.threshold == 0.6 and dist.spaces == {"cosine": 5}
            out = data.reviewer_outcomes(conn, 7, today - 1, today)
            assert out == {"confirm": [0, 3], "reject": [0, 2], "unknown": [1, 0]}
            assert data.device_days(conn, 7, today - 1, today) == {"unit-b": [4, 3], "unit-a": [0, 2]}
            fleet = data.fleet_versions(conn)
            assert fleet.counts == {7: 2, 6: 1} and fleet.latest == 7
    finally:
        db.dispose()
