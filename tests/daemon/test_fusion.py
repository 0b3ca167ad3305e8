"""A track's faces fused across frames: the daemon matches the quality-weighted template of a person's frames,
and the result says how many were fused. Real models, real LFW photos of one person as a camera's frames."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from daemon_helpers import build_gallery, install_gallery

from edgeface.capture import EndOfSource, Frame, Source
from edgeface.config import Config
from edgeface.daemon import Daemon
from edgeface.daemon.fusion import fuse, fusion_weight
from edgeface.daemon.steps import perceive, search
from edgeface.gallery.match import Gallery
from edgeface.gallery.signing import load_trusted
from edgeface.mqtt import payloads
from edgeface.outbox import Outbox
from edgeface.vision.cards import find_card
from edgeface.vision.engine import Engine

MakeUnit = Callable[..., tuple[Config, Path]]

PERSON = "Luis_Horna"
ENROLLED = 0  # the gallery holds photo 1 of the person
# The camera sees photos 3, 4 and 2: two that match on their own, then a weaker one that alone does not
# (below the bundle's threshold against the enrolled photo). Fused: above every single one.
FRAMES = (2, 3, 1)
DISTRACTORS = 7
# faces of one person join a track at the embedder's 1:1 threshold (same person in two photos)
ONE_TO_ONE = find_card(Config().models.embedder, task="embedder").embedder.thresholds["cosine"]  # type: ignore[union-attr]


class PhotoCamera(Source):
    """A live camera whose frames are the given photos, ``dt`` seconds apart, then the end."""

    kind = "fake"

    def __init__(self, images: list[np.ndarray], t0: float = 1_700_000_000.0, dt: float = 0.5) -> None:
        super().__init__("cam0")
        self.images, self.t, self.dt = list(images), t0, dt

    def open(self) -> None:
        pass

    def read(self, timeout: float) -> Frame | None:
        if not self.images:
            raise EndOfSource("no more photos")
        self.t += self.dt
        seq = self.next_seq()
        return Frame(source=self.name, key=f"cam0:{seq}", captured_at=self.t, seq=seq, image=self.images.pop(0))

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def lfw_gallery(lfw_people: dict[str, list[Path]], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    others = sorted(n for n, photos in lfw_people.items() if len(photos) >= 2 and n != PERSON)[:DISTRACTORS]
    people = [(n.lower(), n.replace("_", " "), lfw_people[n][0]) for n in [PERSON, *others]]
    people[0] = (PERSON.lower(), PERSON.replace("_", " "), lfw_people[PERSON][ENROLLED])
    return build_gallery(tmp_path_factory.mktemp("lfw-gallery"), people)


def outbox_docs(config: Config) -> list[dict[str, Any]]:
    with Outbox.for_unit(config) as box:
        rows = box.fetch(1000)
    return [payloads.decode(r.payload, "result", max_bytes=1 << 20) for r in rows]


def test_a_track_is_matched_on_its_fused_faces(
    make_unit: MakeUnit, lfw_gallery: tuple[Path, Path], lfw_people: dict[str, list[Path]]
) -> None:
    bundle, pub = lfw_gallery
    config, _ = make_unit(
        with_gallery=False,
        gallery={"trusted_keys": [str(pub)]},
        dedup={"window_s": 10.0, "similarity": ONE_TO_ONE},
        capture={"fps": 0},
        run={"frame_queue": 8},
    )
    install_gallery(config, bundle)
    engine = Engine(config)
    photos = [engine.load_image(lfw_people[PERSON][i]) for i in FRAMES]

    # Each frame alone, as the match stage sees it: the same steps, the same gallery.
    gallery = Gallery.open(bundle, load_trusted([pub]), embedder_sha256=engine.embedder_card.sha256)
    try:
        seen = [perceive(engine, p)[0] for p in photos]
        assert all(e is not None for _, e in seen)
        alone = [search(gallery, e) for _, e in seen if e is not None]
        embeddings = np.stack([e for _, e in seen if e is not None])
        weights = np.array([fusion_weight(d.quality) for d, _ in seen])
        expected = search(gallery, fuse(embeddings, weights))
    finally:
        gallery.close()
    person = PERSON.lower()
    assert [d.candidates[0].identity for d in alone] == [person] * 3
    assert alone[2].match is None  # the weaker frame alone: no match at the bundle's threshold
    single_best = max(d.candidates[0].score for d in alone)

    d = Daemon(config, source=PhotoCamera(photos), install_signals=False)
    assert d.run() == 0
    assert d.summary.frames == 3 and d.summary.merged == 2 and d.metrics.total("edgeface_tracks_fused_total") == 1
    (doc,) = outbox_docs(config)  # one person, one result, valid against the schema
    assert doc["frames_fused"] == 3
    assert doc["decision"] == "match" and doc["candidates"][0]["identity_id"] == person
    top = doc["candidates"][0]["score"]
    assert top == pytest.approx(expected.candidates[0].score, abs=2e-6)  # the fused template was searched
    assert top > single_best  # closer to the enrolled photo than any single frame
    assert doc["threshold"] == pytest.approx(alone[2].threshold)
    # the quality figures and box stay those of the best capture
    best = max(range(3), key=lambda i: weights[i])
    assert doc["quality"]["sharpness"] == pytest.approx(seen[best][0].quality.sharpness, abs=0.1)


def test_separate_tracks_are_not_fused(make_unit: MakeUnit, lfw_gallery: tuple[Path, Path], lfw_people: Any) -> None:
    """``dedup.window_s = 0`` (one result per face): every frame keeps its own match, one face each."""
    bundle, pub = lfw_gallery
    config, _ = make_unit(with_gallery=False, gallery={"trusted_keys": [str(pub)]}, capture={"fps": 0})
    install_gallery(config, bundle)
    engine = Engine(config)
    photos = [engine.load_image(lfw_people[PERSON][i]) for i in FRAMES]
    d = Daemon(config, source=PhotoCamera(photos), install_signals=False)
    assert d.run() == 0
    docs = outbox_docs(config)
    assert len(docs) == 3 and [doc["frames_fused"] for doc in docs] == [1, 1, 1]
    assert sorted(doc["decision"] for doc in docs) == ["match", "match", "no_match"]
    assert d.metrics.total("edgeface_tracks_fused_total") == 0
