"""``edgeface bench e2e``: the whole field-unit loop on this machine, with a broker that is down for part of it.

1. Central side: enroll the first LFW image of ``enrolled`` people (real enrollment code), publish a
   signed gallery, serve it over HTTP on loopback.
2. The unit: a configuration of its own (folder source, encrypted gallery, MQTT to a local Mosquitto),
   ``edgeface gallery sync`` to install the gallery, then ``edgeface run`` as a child process.
3. Photos arrive in the unit's inbox in batches (temporary name, then rename, as a careful copier
   does): other images of the enrolled people (mated probes) and images of ``strangers`` who are not
   enrolled (non-mated probes), shuffled. The broker is **down** for the first third, up for the
   second (with a central ingest storing each result id once), down again for the last third.
4. Once every photo is processed the broker comes back; the run waits until the outbox is empty,
   stops the unit with SIGTERM, and accounts for everything:

   * every photo: in the unit's folder ledger as done (with its result ids), unreadable or failed;
   * every result: stored by the ingest exactly once (redeliveries absorbed are counted), none left in
     the outbox, none stored centrally that the unit did not make;
   * identification at the bundle's threshold (derived for its size, edgeface.vision.calibration): rank-1 of
     mated probes, correct identifications, false matches (a mated probe given someone else, a stranger
     given anyone), by the face nearest the image centre (LFW's labelled face).

LFW is read where it lies and never copied into the repository; the run's folder holds copies only
while it runs (``keep=False`` deletes them).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..capture.folder import read_ledger
from ..config import load_config
from ..errors import EdgefaceError
from ..evaluation.lfw import people
from ..gallery import signing
from ..gallery.crypto import generate_key_file
from ..logs import get_logger
from ..testing.broker import LocalBroker, free_port
from ..testing.mqttload import Child, wait_for

log = get_logger(__name__)

Progress = Callable[[str], None]


def choose(
    root: Path, enrolled: int, strangers: int, probes: int, seed: int
) -> tuple[dict[str, Path], list[tuple[Path, str, bool]]]:
    """(enrollment image per person, probes as (image, person, mated)), reproducibly."""
    rng = random.Random(seed)
    everyone = people(root)
    multi = sorted(p for p, imgs in everyone.items() if len(imgs) >= 2)
    chosen = rng.sample(multi, min(enrolled, len(multi)))
    others = sorted(set(everyone) - set(chosen))
    strangers_chosen = rng.sample(others, min(strangers, len(others)))
    gallery = {p: everyone[p][0] for p in chosen}
    plist = [(img, p, True) for p in chosen for img in everyone[p][1 : 1 + probes]]
    plist += [(img, p, False) for p in strangers_chosen for img in everyone[p][:probes]]
    rng.shuffle(plist)
    return gallery, plist


def _toml(sections: dict[str, dict[str, Any]]) -> str:
    def val(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return json.dumps(str(v))

    return "\n".join(
        f"[{n}]\n" + "\n".join(f"{k} = {val(v)}" for k, v in s.items()) + "\n" for n, s in sections.items()
    )


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from edgeface.cli import main; sys.exit(main())", *args]


def run(
    lfw_root: Path,
    work: Path,
    *,
    enrolled: int = 100,
    strangers: int = 100,
    probes: int = 2,
    batch: int = 6,
    batch_interval_s: float = 0.5,
    seed: int = 0,
    target_fpir: float | None = None,
    progress: Progress = lambda s: None,
) -> dict[str, Any]:
    from ..gallery.enroll import EnrollItem, Workspace, enroll, settings_key
    from ..gallery.publish import publish_for
    from ..gallery.serve import make_gallery_server
    from ..mqtt import Ingest, ResultStore
    from ..mqtt.link import LinkSettings
    from ..vision.engine import Engine

    work.mkdir(parents=True, exist_ok=True)
    central, unit = work / "central", work / "unit"
    for d in (central, unit):
        if d.exists():
            shutil.rmtree(d)
        d.mkdir()
    t_start = time.time()
    gallery_images, probe_list = choose(lfw_root, enrolled, strangers, probes, seed)

    # -- central: enroll, publish, serve --------------------------------------------------------------
    progress(f"enrolling {len(gallery_images)} people")
    config = load_config(None, env={})
    engine = Engine(config)
    card = engine.embedder_card
    spec = card.embedder
    assert spec is not None
    ws = Workspace(central / "workspace")
    items = [
        EnrollItem(p, img, "LFW research set, benchmark only", "LFW", "bench e2e", p.replace("_", " "))
        for p, img in sorted(gallery_images.items())
    ]
    report = enroll(engine, ws, items, second_face_ratio=config.enroll.second_face_ratio)
    in_gallery = {r.item.identity for r in report.results if r.status in ("enrolled", "unchanged")}
    vectors, entries, identities = ws.content(settings_key(engine, config.enroll.second_face_ratio))
    ws.close()
    signing.generate_keypair(central / "signing.pem", central / "signing.pub")
    # the bundle's decision threshold is derived for its size, as `edgeface gallery build` does
    target = config.gallery.target_fpir if target_fpir is None else target_fpir
    pub = publish_for(
        central / "publish",
        card,
        vectors=vectors,
        entries=entries,
        identities=identities,
        signer=signing.load_private_key(central / "signing.pem"),
        target_fpir=target,
    )
    one_to_n = {"the card's 1:1 threshold": spec.thresholds["cosine"]}
    server = make_gallery_server(central / "publish", port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    threshold = pub.manifest.threshold

    # -- the unit --------------------------------------------------------------------------------------
    port = free_port()
    generate_key_file(unit / "gallery.key")
    inbox = unit / "inbox"
    inbox.mkdir()
    cfg_path = unit / "edgeface.toml"
    cfg_path.write_text(
        _toml(
            {
                "device": {"id": "e2e-unit"},
                "logging": {"format": "json"},
                "capture": {"source": "folder"},
                "capture.folder": {"path": str(inbox), "settle_s": 0.5, "poll_s": 0.2},
                "gallery": {
                    "dir": str(unit / "gallery"),
                    "trusted_keys": [str(central / "signing.pub")],
                    "sync_url": f"http://127.0.0.1:{server.server_port}/",
                    "key_file": str(unit / "gallery.key"),
                    "sync_interval_s": 600,
                },
                "outbox": {"path": str(unit / "outbox.sqlite3")},
                "mqtt": {
                    "host": "127.0.0.1",
                    "port": port,
                    "tls": False,
                    "reconnect_min_s": 0.2,
                    "reconnect_max_s": 2.0,
                    "heartbeat_s": 5.0,
                },
                "run": {"state_dir": str(unit / "state")},
                "retention": {"dir": str(unit / "media")},
                "dedup": {"window_s": 0.0},
                "status": {"metrics_port": 0, "interval_s": 1.0},
            }
        )
    )
    unit_config = load_config(cfg_path, env={})
    sync = subprocess.run(
        _cli("--config", str(cfg_path), "gallery", "sync", "--json"),
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if sync.returncode != 0:
        raise EdgefaceError(f"edgeface gallery sync failed: {sync.stdout} {sync.stderr[-2000:]}")

    broker = LocalBroker.plain(work / "broker", port=port)
    store = ResultStore(central / "results.sqlite3")
    ingest = Ingest(
        store,
        LinkSettings(host="127.0.0.1", port=port, client_id="e2e-ingest", tls=False),
        reconnect_min_s=0.2,
        reconnect_max_s=1.0,
    )
    child = Child(["--config", str(cfg_path), "run"], unit / "run.log")
    events: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []
    stop_sampling = threading.Event()

    def event(what: str) -> None:
        events.append({"t": round(time.time() - t_start, 2), "event": what})
        progress(what)

    def outbox_depth() -> int:
        from ..outbox import Outbox

        if not unit_config.outbox.path.exists():
            return 0
        with Outbox(unit_config.outbox.path) as box:
            return box.pending_count()

    def sample() -> None:
        while not stop_sampling.wait(1.0):
            samples.append(
                {
                    "t": round(time.time() - t_start, 1),
                    "outbox": outbox_depth(),
                    "central": store.count(),
                    "broker_up": broker.alive,
                }
            )

    names: dict[str, tuple[str, bool]] = {}
    thirds = [probe_list[i * len(probe_list) // 3 : (i + 1) * len(probe_list) // 3] for i in range(3)]

    def feed(part: list[tuple[Path, str, bool]], offset: int) -> None:
        for i in range(0, len(part), batch):
            for j, (img, person, mated) in enumerate(part[i : i + batch]):
                name = f"{offset + i + j:05d}-{img.name}"
                tmp = inbox / f".{name}.part"
                shutil.copyfile(img, tmp)
                os.replace(tmp, inbox / name)
                names[name] = (person, mated)
            time.sleep(batch_interval_s)

    child.start()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        event("unit started, broker down")
        feed(thirds[0], 0)
        broker.start()
        ingest.start()
        event("broker up, ingest subscribed")
        feed(thirds[1], len(thirds[0]))
        broker.stop()
        event("broker stopped (down)")
        feed(thirds[2], len(thirds[0]) + len(thirds[1]))

        def all_processed() -> bool:
            return sum(1 for r in _ledger(unit_config) if r["status"] != "processing") >= len(names)

        if not wait_for(lambda: all_processed() or not child.alive, 600, 0.5) or not child.alive:
            raise EdgefaceError(f"the unit did not process every photo; see {child.log_path}:\n{child.log_tail()}")
        event(f"all {len(names)} photos processed while the broker is down; outbox {outbox_depth()}")
        broker.start()
        event("broker up again")
        if not wait_for(lambda: outbox_depth() == 0 or not child.alive, 600, 0.5):
            raise EdgefaceError(f"the outbox did not drain; see {child.log_path}")
        expected = {i for r in _ledger(unit_config) for i in r["results"]}
        wait_for(lambda: set(store.ids()) >= expected, 60, 0.2)
        event("outbox empty, everything at the ingest")
        assert child.proc is not None
        child.proc.send_signal(signal.SIGTERM)
        exit_code = child.proc.wait(120)
        event(f"unit stopped by SIGTERM, exit {exit_code}")
    finally:
        stop_sampling.set()
        child.kill()
        ingest.stop()
        broker.kill()
        server.shutdown()
    figures = account(unit_config, names, in_gallery, store, threshold, ingest.stats.as_dict(), one_to_n)
    store.close()
    figures.update(
        exit_code=exit_code,
        events=events,
        outbox_samples=samples,
        threshold=threshold,
        embedder=card.id,
        threshold_source=f"the bundle's, derived for {pub.manifest.count} entries at target FPIR {target:g}",
        gallery={
            "version": pub.manifest.gallery_version,
            "people_enrolled": len(in_gallery),
            "people_refused_at_enrollment": sorted(set(gallery_images) - in_gallery),
        },
        seconds=round(time.time() - t_start, 1),
        log=str(child.log_path),
        max_outbox_depth=max((s["outbox"] for s in samples), default=0),
    )
    return figures


def _ledger(config: Any) -> list[dict[str, Any]]:
    return read_ledger(config.run.state_dir, config.capture.folder.path)


def _central_face(docs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The result of the face nearest the centre of a 250x250 LFW image (its labelled person)."""

    def dist(d: dict[str, Any]) -> float:
        x0, y0, x1, y1 = d.get("face_box") or (0, 0, 0, 0)
        return ((x0 + x1) / 2 - 125) ** 2 + ((y0 + y1) / 2 - 125) ** 2

    return min(docs, key=dist) if docs else None


def account(
    config: Any,
    names: dict[str, tuple[str, bool]],
    in_gallery: set[str],
    store: Any,
    threshold: float,
    ingest_stats: dict[str, Any],
    other_thresholds: dict[str, float] | None = None,
) -> dict[str, Any]:
    rows = {r["path"]: r for r in _ledger(config)}
    central = {i: json.loads(p) for i, p in store.payloads().items()}
    unit_ids = [i for r in rows.values() for i in r["results"]]
    statuses: dict[str, int] = {}
    for r in rows.values():
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    accounting = {
        "photos_fed": len(names),
        "photos_in_ledger": sum(1 for n in names if n in rows),
        "ledger_status": statuses,
        "photos_missing": sorted(n for n in names if n not in rows)[:20],
        "faces": sum(int(r["faces"] or 0) for r in rows.values()),
        "results_made": len(unit_ids),
        "results_distinct": len(set(unit_ids)),
        "results_at_central": len(central),
        "results_lost": len(set(unit_ids) - set(central)),
        "results_unknown_at_central": len(set(central) - set(unit_ids)),
        "redeliveries_absorbed_by_ingest": ingest_stats.get("duplicates", 0),
    }
    mated = {"probes": 0, "rank1": 0, "identified": 0, "wrong_match": 0, "no_face": 0, "refused": 0}
    strangers = {"probes": 0, "false_match": 0, "no_face": 0, "refused": 0}
    tops: list[tuple[bool, str, str | None, float | None]] = []  # (mated, person, top identity, top score)
    for name, (person, _) in names.items():
        is_mated = person in in_gallery
        bucket = mated if is_mated else strangers
        bucket["probes"] += 1
        docs = [central[i] for i in rows.get(name, {}).get("results", []) if i in central]
        doc = _central_face(docs)
        if doc is None:
            bucket["no_face"] += 1
            continue
        if doc["decision"] == "refused":
            bucket["refused"] += 1
            continue
        top = doc["candidates"][0]["identity_id"] if doc["candidates"] else None
        tops.append((is_mated, person, top, doc["candidates"][0]["score"] if doc["candidates"] else None))
        if is_mated:
            mated["rank1"] += int(top == person)
            if doc["decision"] == "match":
                if top == person:
                    mated["identified"] += 1
                else:
                    mated["wrong_match"] += 1
        elif doc["decision"] == "match":
            strangers["false_match"] += 1

    def rate(a: int, b: int) -> float | None:
        return round(a / b, 4) if b else None

    ident = {
        "threshold": threshold,
        "mated": {
            **mated,
            "rank1_rate": rate(mated["rank1"], mated["probes"]),
            "identified_rate": rate(mated["identified"], mated["probes"]),
            "fnir": rate(mated["probes"] - mated["identified"], mated["probes"]),
        },
        "non_mated": {**strangers, "fpir": rate(strangers["false_match"], strangers["probes"])},
        "false_matches": mated["wrong_match"] + strangers["false_match"],
        # The same results decided at other thresholds (from the top candidate's score), e.g. the 1:N
        # threshold edgeface.vision.calibration derives from the card's impostor statistics for this gallery size.
        "other_thresholds": {
            label: _at(tops, t, mated["probes"], strangers["probes"]) for label, t in (other_thresholds or {}).items()
        },
    }
    ok = (
        accounting["photos_in_ledger"] == len(names)
        and accounting["results_lost"] == 0
        and accounting["results_unknown_at_central"] == 0
        and accounting["results_made"] == accounting["results_distinct"]
        and "processing" not in statuses
    )
    return {"accounting": accounting, "identification": ident, "all_accounted_and_delivered_once": ok}


def _at(tops: list[tuple[bool, str, str | None, float | None]], t: float, n_mated: int, n_non: int) -> dict[str, Any]:
    ident = sum(1 for m, p, top, s in tops if m and s is not None and s >= t and top == p)
    wrong = sum(1 for m, p, top, s in tops if m and s is not None and s >= t and top != p)
    false = sum(1 for m, _, _, s in tops if not m and s is not None and s >= t)
    return {
        "threshold": t,
        "identified": ident,
        "identified_rate": round(ident / n_mated, 4) if n_mated else None,
        "wrong_match": wrong,
        "non_mated_false_match": false,
        "fpir": round(false / n_non, 4) if n_non else None,
    }


def markdown(f: dict[str, Any]) -> str:
    a, i = f["accounting"], f["identification"]
    m, s = i["mated"], i["non_mated"]
    lines = [
        "# edgeface end-to-end run (bench e2e)",
        "",
        (
            f"{a['photos_fed']} LFW photos through `edgeface run` (folder source, {f['embedder']}, gallery of "
            f"{f['gallery']['people_enrolled']} people, threshold {f['threshold']}: {f['threshold_source']}), broker down "
            "for the first and last "
            f"third of the run (max outbox depth {f['max_outbox_depth']}). {f['seconds']} s."
        ),
        "",
        "| check | value |",
        "| --- | --- |",
        f"| photos fed / in the unit's ledger | {a['photos_fed']} / {a['photos_in_ledger']} |",
        f"| ledger status | {a['ledger_status']} |",
        f"| faces / results made (distinct) | {a['faces']} / {a['results_made']} ({a['results_distinct']}) |",
        (
            f"| results stored centrally / lost / unknown | {a['results_at_central']} / {a['results_lost']} / "
            f"{a['results_unknown_at_central']} |"
        ),
        f"| redeliveries absorbed by the ingest | {a['redeliveries_absorbed_by_ingest']} |",
        f"| everything accounted for, delivered once | {f['all_accounted_and_delivered_once']} |",
        f"| unit exit code after SIGTERM | {f['exit_code']} |",
        "",
        "| identification at the calibrated threshold | value |",
        "| --- | --- |",
        f"| mated probes (enrolled people) | {m['probes']} |",
        f"| rank-1 (top candidate is the person) | {m['rank1']} ({m['rank1_rate']}) |",
        f"| identified (match, right person) | {m['identified']} ({m['identified_rate']}); FNIR {m['fnir']} |",
        f"| mated probes matched to someone else | {m['wrong_match']} |",
        f"| non-mated probes (not enrolled) | {s['probes']} |",
        f"| non-mated probes matched (false matches) | {s['false_match']} (FPIR {s['fpir']}) |",
        (
            f"| no face found / refused by quality (mated, non-mated) | {m['no_face']}/{m['refused']}, "
            f"{s['no_face']}/{s['refused']} |"
        ),
        *[
            f"| at {k} (t = {v['threshold']}): identified / wrong / false matches | {v['identified']} "
            f"({v['identified_rate']}) / {v['wrong_match']} / {v['non_mated_false_match']} (FPIR {v['fpir']}) |"
            for k, v in i["other_thresholds"].items()
        ],
        "",
        "Timeline:",
        "",
        *[f"* {e['t']:>7.2f} s  {e['event']}" for e in f["events"]],
    ]
    return "\n".join(lines) + "\n"
