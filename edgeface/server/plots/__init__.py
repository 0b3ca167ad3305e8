"""The plots page: how reviewed scores sit against the threshold, what reviewers decided, what each unit
sent, which gallery the fleet runs. Server-side SVG inline in the page (no script, no outside source:
the CSP stays strict); data.py reads the figures, svg.py draws them.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, render_template, request
from markupsafe import Markup

from ..access import access
from ..services import services
from . import data, svg

bp = Blueprint("plots", __name__)

MAX_DAYS = 366
MAX_DEVICES = 12  # small multiples shown; the rest are counted in a note


def _args() -> tuple[int | None, int, bool]:
    """(gallery version or None for all, days, whether the version was chosen) from the query string."""
    raw = request.args.get("version", "").strip()
    version = None
    if raw and raw != "all":
        try:
            version = int(raw)
        except ValueError:
            abort(400, f"version must be a gallery version number or 'all', got {raw[:20]!r}")
    days = request.args.get("days", "30").strip()
    if not days.isdigit() or not 1 <= int(days) <= MAX_DAYS:
        abort(400, f"days must be a whole number from 1 to {MAX_DAYS}, got {days[:20]!r}")
    return version, int(days), bool(raw)


def score_plot(dist: data.ScoreDistribution) -> str:
    edges = data.bins([dist.confirmed, dist.rejected], dist.threshold)
    space = (
        "normalised score"
        if dist.spaces.most_common(1) and dist.spaces.most_common(1)[0][0] == "normalised"
        else "cosine score"
    )
    return svg.histogram(
        edges,
        [
            svg.Series("confirmed", "s-confirmed", data.counts(dist.confirmed, edges)),
            svg.Series("rejected", "s-rejected", data.counts(dist.rejected, edges)),
        ],
        title="Reviewed candidates by score",
        x_label=space,
        threshold=dist.threshold,
        threshold_label="decision threshold",
    )


def outcomes_plot(labels: list[str], outcomes: dict[str, list[int]]) -> str:
    names = {"confirm": "confirmed", "reject": "rejected", "unknown": "unknown"}
    return svg.stacked_bars(
        labels,
        [svg.Series(names[v], f"s-{names[v]}", outcomes[v]) for v in data.VERDICTS],
        title="Reviewer decisions per day (UTC)",
        y_label="decisions",
        ticks=[d[5:] for d in labels],
    )


def device_plots(labels: list[str], per_device: dict[str, list[int]]) -> list[str]:
    return [
        svg.stacked_bars(
            labels,
            [svg.Series("results", "s-results", counts)],
            title=f"{dev}: results per day (UTC)",
            y_label="results",
            ticks=[d[5:] for d in labels],
            height=170,
        )
        for dev, counts in list(per_device.items())[:MAX_DEVICES]
    ]


def fleet_plot(fleet: data.FleetVersions) -> str:
    labels = [f"version {v}" if v is not None else "no gallery" for v in fleet.counts]
    return svg.hbars(
        labels,
        list(fleet.counts.values()),
        title="Devices per gallery version",
        marked=f"version {fleet.latest}" if fleet.latest is not None else None,
        note="(latest published)",
    )


@bp.route("/plots")
@access("reviewer", "admin")
def index() -> Any:
    version, days, chosen = _args()
    first, last = data.window(days)
    with services().db.read() as conn:
        known = data.versions(conn)
        if not chosen and known:
            version = known[0]  # the newest gallery by default: thresholds change between versions
        dist = data.score_distribution(conn, version)
        outcomes = data.reviewer_outcomes(conn, version, first, last)
        per_device = data.device_days(conn, version, first, last)
        fleet = data.fleet_versions(conn)
    labels = data.day_labels(first, last)
    return render_template(
        "plots.html",
        versions=known,
        version=version,
        days=days,
        dist=dist,
        max_reviewed=data.MAX_REVIEWED,
        scores_svg=Markup(score_plot(dist)),  # noqa: S704 - svg.py escapes every text it writes
        outcomes_svg=Markup(outcomes_plot(labels, outcomes)),  # noqa: S704
        device_svgs=[Markup(s) for s in device_plots(labels, per_device)],  # noqa: S704
        more_devices=max(0, len(per_device) - MAX_DEVICES),
        fleet_svg=Markup(fleet_plot(fleet)) if fleet.counts else None,  # noqa: S704
        latest=fleet.latest,
    )
