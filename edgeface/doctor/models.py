"""The models: each file against its card's SHA-256, the backend each model got, and its inference time.

One line per model the unit runs (detector, landmarks when alignment refines with them, embedder), each
loaded the way the daemon loads it (an :class:`~edgeface.vision.engine.Engine` with the unit's settings)
and run on a bundled sample photo: the detector must find its face, so a model or delegate that loads
but computes garbage fails here too. One more line covers the other cards in the models folder.
"""

from __future__ import annotations

import hashlib
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import EdgefaceError
from .report import Check

if TYPE_CHECKING:
    from ..config import Config
    from ..vision.cards import ModelCard
    from ..vision.engine import Engine

SAMPLE_PHOTO = Path(__file__).resolve().parent.parent / "_sample" / "photos" / "01-obama-address-to-congress.jpg"
RESTORE = "reinstall edgeface (pip install --force-reinstall edgeface) or restore the file from the release"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def file_problem(card: ModelCard) -> str:
    """Why the card's model file cannot be used ("" when it is there and matches the card)."""
    path = card.model_path
    try:
        digest = file_sha256(path)
    except OSError as e:
        return f"{path} cannot be read ({e.strerror or e})"
    if digest != card.sha256:
        return f"{path.name} has SHA-256 {digest[:16]}..., its card says {card.sha256[:16]}... (corrupt or replaced)"
    return ""


def _timed(fn: Callable[[], Any], runs: int) -> tuple[Any, float]:
    """``fn``'s result after one warm-up call, and the median of ``runs`` timed calls in milliseconds."""
    out = fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return out, statistics.median(times)


def placement(engine: Engine, role: str, runner: Any) -> tuple[str, str, str, str]:
    """(backend it got, backend wanted, why it fell back, the card that runs) for the model in ``role``;
    the card differs from the configured one when a compiled variant fell back to its reference."""
    try:
        placed = engine.placements().get(role)
    except (EdgefaceError, OSError):  # another model does not load: its own line says why
        placed = None
    card = getattr(runner, "card", None)
    if placed is not None:
        return str(placed.backend), str(placed.wanted), placed.reason, placed.card.id
    got = str(getattr(getattr(runner, "model", runner), "backend", "unknown"))
    return got, got, "", str(getattr(card, "id", ""))


class _Chain:
    """The sample photo carried through the models in order, so each gets a real input."""

    def __init__(self, engine: Engine, runs: int) -> None:
        self.engine = engine
        self.runs = runs
        self.image = engine.load_image(SAMPLE_PHOTO)
        self.face: Any = None
        self.chip: Any = None

    def detector(self) -> tuple[Any, str, float]:
        det = self.engine.detector
        found, ms = _timed(lambda: det.detect_upright(self.image), self.runs)
        if not found:
            raise EdgefaceError(
                f"the detector found no face in the bundled sample photo {SAMPLE_PHOTO.name}: the model or its "
                "backend computes wrong output"
            )
        self.face = self.engine.detect(self.image)[0]
        return det, f"{len(found)} face in the sample photo", ms

    def landmarks(self) -> tuple[Any, str, float]:
        mesh = self.engine.refiner
        assert mesh is not None
        (_, presence), ms = _timed(lambda: mesh.landmarks(self.image, self.face), self.runs)
        return mesh, f"face presence {presence:.2f}", ms

    def embedder(self) -> tuple[Any, str, float]:
        import numpy as np

        emb = self.engine.embedder
        self.chip = self.engine.align(self.image, self.face)
        vec, ms = _timed(lambda: emb.raw(self.chip), self.runs)
        if not np.all(np.isfinite(vec)) or not np.any(vec):
            raise EdgefaceError(
                "the embedder returned an empty or non-finite vector: the model or its backend is broken"
            )
        return emb, f"{vec.shape[-1]}-d", ms


def model_checks(config: Config) -> list[Check]:
    """One line per model the unit runs, then one for the other cards in the models folder."""
    from ..vision.cards import find_card, list_cards
    from ..vision.engine import Engine

    cfg = config
    runs = cfg.doctor.inference_runs
    engine = Engine(cfg)
    chain = _Chain(engine, runs)
    roles: list[tuple[str, str, str]] = [("detector", cfg.models.detector, "detector")]
    try:
        spec = engine.embedder_card.embedder
        if cfg.align.refine and spec is not None and spec.alignment.landmark_model and spec.alignment.landmark_template:
            roles.append(("landmarks", spec.alignment.landmark_model, "landmarks"))
    except EdgefaceError:
        pass  # the embedder's own line says what is wrong with its card
    roles.append(("embedder", cfg.models.embedder, "embedder"))
    out: list[Check] = []
    used: set[str] = set()
    upstream_failed = ""
    for role, model_id, task in roles:
        name = f"model.{role}"
        used.add(model_id)
        try:
            card = find_card(model_id, cfg.models.dir, task=task)
        except EdgefaceError as e:
            out.append(
                Check(name, "fail", f"{model_id}: {e}", f"check models.{role if role != 'landmarks' else 'embedder'}")
            )
            upstream_failed = upstream_failed or role
            continue
        detail: dict[str, Any] = {"model": card.id, "file": str(card.model_path), "sha256": card.sha256}
        problem = file_problem(card)
        if problem:
            out.append(Check(name, "fail", f"{card.id}: {problem}", RESTORE, detail))
            upstream_failed = upstream_failed or role
            continue
        if upstream_failed:
            out.append(
                Check(
                    name,
                    "skip",
                    f"{card.id}: file matches its card; not run (the {upstream_failed} failed)",
                    detail=detail,
                )
            )
            continue
        try:
            runner, what, ms = getattr(chain, role)()
        except (EdgefaceError, OSError, ValueError, RuntimeError) as e:
            out.append(
                Check(
                    name,
                    "fail",
                    f"{card.id}: file matches its card but it does not run: {e}",
                    "check runtime.backend (and the delegate) in the configuration, or set it to 'cpu'",
                    detail,
                )
            )
            upstream_failed = upstream_failed or role
            continue
        backend, wanted, why, running = placement(engine, role, runner)
        space = getattr(card.embedder, "space", "") if card.embedder is not None else ""
        detail.update(
            backend=backend,
            wanted=wanted,
            running=running,
            ms_p50=round(ms, 2),
            runs=runs,
            threads=cfg.runtime.num_threads,
            output=what,
            **({"space": space} if space else {}),
        )
        runs_as = f" (runs as {running})" if running and running != card.id else ""
        text = (
            f"{card.id}{runs_as}: SHA-256 ok, backend {backend}, {ms:.1f} ms (median of {runs}, "
            f"{cfg.runtime.num_threads} threads), {what}" + (f", space {space}" if space else "")
        )
        if backend != wanted:
            out.append(
                Check(
                    name,
                    "warn",
                    f"{text}; fell back from {wanted}: {why}",
                    f"it runs, slower: fix the {wanted} backend or set it to cpu for this model",
                    detail,
                )
            )
            continue
        out.append(Check(name, "ok", text, detail=detail))
    out.append(_other_cards(cfg, used, list_cards))
    return out


def _other_cards(cfg: Config, used: set[str], list_cards: Callable[..., list[ModelCard]]) -> Check:
    """The cards the unit does not run: a bad file there matters only when someone switches to it."""
    try:
        cards = [c for c in list_cards(cfg.models.dir) if c.id not in used]
    except EdgefaceError as e:
        return Check("models.other", "warn", f"a model card cannot be read: {e}", "fix or remove that card")
    bad = {c.id: p for c in cards if (p := file_problem(c))}
    if bad:
        return Check(
            "models.other",
            "warn",
            f"{len(bad)} of {len(cards)} unused models cannot be used: "
            + "; ".join(f"{k}: {v}" for k, v in bad.items()),
            f"{RESTORE} before switching a unit to one of them",
            {"bad": bad},
        )
    ids = ", ".join(c.id for c in cards)
    return Check("models.other", "ok", f"{len(cards)} more cards, files match: {ids}" if cards else "no other cards")
