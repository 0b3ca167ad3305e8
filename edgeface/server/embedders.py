"""The embedders the fleet runs (``server.embedders``) and the enrolled images embedded with each.

A new embedder is a new embedding space: a gallery for it is built from the enrolled images themselves
(the server keeps them, ``<data_dir>/images/``), never converted from another model's vectors. Each
image's embedding is cached in the enrollment workspace per (image SHA-256, embedding settings), and the
settings include the embedder file's SHA-256 (:func:`~edgeface.gallery.enroll.settings_key`), so a
publication embeds only what no earlier one did: everything once when an embedder is added, then only
new images.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError, ImageError, ModelError
from ..logs import get_logger
from ..vision.cards import ModelCard, find_card, list_cards

if TYPE_CHECKING:
    from ..config import Config
    from ..gallery.enroll import Workspace
    from ..vision.engine import Engine

log = get_logger(__name__)

FOLDER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")  # an embedder's folder in the publish folder


def fleet_cards(config: Config) -> list[ModelCard]:
    """The cards of ``server.embedders`` (or of ``models.embedder`` when it is empty), first one first.

    Raises ConfigError naming the setting and the embedder cards there are, for an unknown id, a card that
    is not an embedder, or an id given twice.
    """
    ids = list(config.server.embedders) or [config.models.embedder]
    cards: list[ModelCard] = []
    for model_id in ids:
        try:
            if not FOLDER_NAME.match(model_id):
                raise ModelError(f"{model_id!r} is not a model id")
            cards.append(find_card(model_id, config.models.dir, task="embedder"))
        except ModelError as e:
            raise ConfigError(
                f"server.embedders: {e} The embedder cards in the models folder are: {', '.join(known_embedders(config))}"
            ) from None
    dup = {c.id for c in cards if [d.id for d in cards].count(c.id) > 1}
    if dup:
        raise ConfigError(f"server.embedders names {', '.join(sorted(dup))} more than once")
    return cards


def known_embedders(config: Config) -> list[str]:
    try:
        return [c.id for c in list_cards(config.models.dir) if c.task == "embedder"]
    except ModelError:
        return []


def engine_for(svc: Any, card: ModelCard) -> Engine:
    """A face engine for ``card`` (loaded once per server process; call with ``svc.engine_lock`` held)."""
    engine: Engine = svc.engine()
    if engine.embedder_card.id == card.id:
        return engine
    engines: dict[str, Engine] = svc.__dict__.setdefault("_fleet_engines", {})
    if card.id not in engines:
        from ..vision.engine import Engine

        cfg = svc.config
        engines[card.id] = Engine(dataclasses.replace(cfg, models=dataclasses.replace(cfg.models, embedder=card.id)))
    return engines[card.id]


@dataclass
class Embedded:
    """Everything enrolled, embedded with one model: ready for ``publish_for``."""

    card: ModelCard
    vectors: np.ndarray
    entries: list[dict[str, Any]]
    identities: list[dict[str, Any]]
    embedded: int = 0  # images embedded by this call (not in the cache)
    cached: int = 0
    refused: list[dict[str, Any]] = field(default_factory=list)  # images this model's chain could not use


def _image_file(ws: Workspace, images_dir: Path, entry: dict[str, Any]) -> Path | None:
    """The kept file of an enrolled image: where it was enrolled from, or ``<images_dir>/<sha256>.*``."""
    given = ws.file_of(str(entry["identity"]), str(entry["image"]))
    if given and Path(given).is_file():
        return Path(given)
    found = sorted(images_dir.glob(f"{entry['image']}.*"))
    return found[0] if found else None


def embed_enrolled(
    engine: Engine,
    ws: Workspace,
    images_dir: Path,
    entries: list[dict[str, Any]],
    identities: list[dict[str, Any]],
    *,
    second_face_ratio: float,
) -> Embedded:
    """Each enrolled image's embedding with ``engine``'s model: from the cache, or embedded from the kept
    image (and cached). An image this model's chain refuses (no face, quality) is left out and listed."""
    from ..gallery.enroll import _process, settings_key  # _process: exactly what enrollment does to an image

    card = engine.embedder_card
    key = settings_key(engine, second_face_ratio)
    out = Embedded(card, np.zeros((0, 0), np.float32), [], [])
    rows: list[np.ndarray] = []
    for e in entries:
        sha = str(e["image"])
        hit = ws.cached(sha, key)
        if hit is not None:
            out.cached += 1
            status, reasons, vec = hit[0], hit[1], hit[3]
        else:
            path = _image_file(ws, images_dir, e)
            if path is None:
                out.refused.append({"identity": e["identity"], "image": sha, "reasons": ["image file not kept"]})
                continue
            try:
                status, reasons, quality, vec = _process(engine, path, second_face_ratio)
            except ImageError as err:
                out.refused.append({"identity": e["identity"], "image": sha, "reasons": [str(err)]})
                continue
            ws.remember(sha, key, status, reasons, quality, vec)
            ws.db.commit()
            out.embedded += 1
        if status != "enrolled" or vec is None:
            out.refused.append({"identity": e["identity"], "image": sha, "reasons": reasons})
            continue
        rows.append(np.asarray(vec, np.float32))
        out.entries.append(e)
    used = {str(e["identity"]) for e in out.entries}
    out.identities = [i for i in identities if str(i["id"]) in used]
    if rows:
        out.vectors = np.stack(rows)
    log.info(
        "server.gallery.embedded",
        embedder=card.id,
        images=len(entries),
        embedded=out.embedded,
        cached=out.cached,
        refused=len(out.refused),
    )
    for r in out.refused:
        log.warning("server.gallery.not_in_bundle", embedder=card.id, **r)
    return out
