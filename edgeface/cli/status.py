"""``edgeface status``: the unit at a glance (daemon, throughput, gallery, outbox, link, disk, errors).

Exit status 0 while the daemon runs, 3 when it does not (as init scripts' ``status`` do), so a health
check can use it directly.
"""

from __future__ import annotations

import time
from typing import Any

import click

from .app import AppContext, emit_json, human_bytes, pass_app

EXIT_NOT_RUNNING = 3


def _ago(ts: float | None, now: float) -> str:
    if not ts:
        return "never"
    return f"{_span(now - float(ts))} ago"


def _span(s: float) -> str:
    s = max(0.0, s)
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    if s < 2 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def render(doc: dict[str, Any], now: float | None = None) -> str:
    now = time.time() if now is None else now
    lines = []
    state = doc["daemon"]
    head = f"edgeface unit {doc.get('device_id', '?')}: daemon {state}"
    if state == "running":
        head += f" (pid {doc.get('pid')}, up {_span(now - float(doc.get('started_at', now)))})"
    elif doc.get("updated_at"):
        head += f" (last update {_ago(doc['updated_at'], now)})"
    lines.append(head)
    if doc.get("demo"):
        lines.append(f"  demo        the bundled demo's last run (nothing configured), state in {doc['demo']}")
    src = doc.get("source") or {}
    if src:
        extra = f", {src['waiting']} waiting" if "waiting" in src else ""
        lines.append(
            f"  source      {src.get('kind')} {src.get('name')} ({'up' if src.get('up') else 'down'}"
            f", reopened {src.get('reopens', 0)}x){extra}"
        )
    rates = doc.get("rates") or {}
    if rates:
        lines.append(
            f"  throughput  {rates.get('frames_per_s', 0):.2f} frames/s, {rates.get('faces_per_s', 0):.2f} "
            f"faces/s (last minute)"
        )
    c = doc.get("counters") or {}
    if c:
        res = ", ".join(f"{v} {k}" for k, v in sorted((c.get("results") or {}).items())) or "none"
        lines.append(
            f"  counters    {c.get('frames_processed', 0)} frames, {c.get('faces', 0)} faces, results: {res}; "
            f"dropped {c.get('frames_dropped', 0)}, unreadable {c.get('frames_unreadable', 0)}, "
            f"failed {c.get('frames_failed', 0)}"
        )
    g = doc["gallery"]
    if g.get("error") and "dir" not in g:
        lines.append(f"  gallery     unknown: {g['error']}")
    elif g.get("installed"):
        sync = g.get("sync") or {}
        lines.append(
            f"  gallery     version {g['version']}, built {_span(g['age_s'] or 0)} ago ({g['created']}), "
            f"{g['count']} images of {g['identities']} people; last sync "
            f"{sync.get('last_status') or 'never'} {_ago(sync.get('last_check'), now) if sync else ''}".rstrip()
        )
        if g.get("stale"):
            lines.append(
                "  gallery     STALE: "
                + (
                    f"no signed pointer newer than {g['fresh_until']} has confirmed it is the latest"
                    if g.get("fresh_until")
                    else "no signed, unexpired pointer has confirmed it is the latest"
                )
                + (
                    f" (last sync: {sync.get('last_status')}, {sync.get('last_reason')})"
                    if sync.get("last_reason")
                    else ""
                )
                + "; it still answers; check the link to gallery.sync_url and that the publisher re-signs "
                "latest.json (edgeface gallery refresh)"
            )
    else:
        lines.append(f"  gallery     none installed in {g['dir']}" + (f" ({g['error']})" if g.get("error") else ""))
    sw = g.get("switch") or {}
    if sw:
        last = sw.get("last_sync") or {}
        lines.append(
            f"  gallery     embedder switch pending: answering with {sw['running']}, told to run {sw['desired']}; "
            + (
                "its gallery is verified: the next start switches both"
                if sw.get("ready")
                else "its gallery is not here yet" + (f" (last sync: {last.get('status')})" if last else "")
            )
        )
    o = doc["outbox"]
    if o.get("error"):
        lines.append(f"  outbox      unknown: {o['error']}")
    else:
        lines.append(
            f"  outbox      {o.get('pending', 0)} waiting ({o.get('matches', 0)} matches), oldest "
            f"{_span(o['oldest_age_s']) if o.get('oldest_age_s') is not None else '-'}, "
            f"{human_bytes(o.get('bytes'))}" + (f", {o['quarantined']} quarantined" if o.get("quarantined") else "")
        )
    link = doc.get("link") or {}
    if link:
        if not link.get("configured"):
            lines.append("  link        no broker configured (mqtt.host): results stay in the outbox")
        else:
            now_state = "online" if link.get("connected") and state == "running" else "offline"
            lines.append(
                f"  link        {now_state} ({link.get('host')}); last connected {_ago(link.get('last_connected_at'), now)}"
                + (f"; last error: {link['last_error']}" if link.get("last_error") else "")
            )
    d = doc["disk"]
    if d.get("error"):
        lines.append(f"  disk        unknown: {d['error']}")
    else:
        used = ", ".join(f"{k} {human_bytes(v)}" for k, v in d["edgeface_bytes"].items())
        lines.append(
            f"  disk        {human_bytes(d['free_bytes'])} free of {human_bytes(d['total_bytes'])} on {d['path']}; "
            f"edgeface: {used}"
        )
    e = doc.get("errors")
    if e is not None:
        latest = e["recent"][-1] if e.get("recent") else None
        lines.append(
            f"  errors      {e['last_hour']} in the last hour"
            + (
                f"; latest {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(latest['ts']))} UTC "
                f"{latest['event']} {latest['detail']}".rstrip()
                if latest
                else ""
            )
        )
    return "\n".join(lines)


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_app
def status_cmd(app: AppContext, as_json: bool) -> None:
    """Gallery version and age, outbox depth, last connection, frames/s, faces/s, disk, errors in the last hour.

    With no configuration, on a machine where no unit has run, it shows the last `edgeface run` demo.
    """
    from ..daemon import demo as demo_mod
    from ..daemon import status as status_mod

    config, demo = app.config, None
    if demo_mod.wants_demo(app.config_path, app.overrides) and not status_mod.status_path(config).exists():
        # nothing configured and no unit ever ran here: show the last `edgeface run` demo, if there was one
        d = demo_mod.demo_dir()
        if (d / "state" / status_mod.STATUS_FILE).is_file():
            config, demo = demo_mod.demo_config(app.overrides, directory=d, fresh=False), d
    doc = status_mod.gather(config)
    if demo is not None:
        doc["demo"] = str(demo)
    if as_json:
        emit_json(doc)
    else:
        click.echo(render(doc))
    if doc["daemon"] != "running":
        raise click.exceptions.Exit(EXIT_NOT_RUNNING)
