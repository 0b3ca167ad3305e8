"""The recognition engine: detector, quality gate, alignment (and embedder) behind one object.

The caller owns an :class:`Engine`; models load on first use, not at construction or import. An
engine is not meant to be shared between threads (TFLite interpreters are not thread-safe): make one
per worker thread. Each model runs on its own backend (``runtime.<role>_backend``, else the card's
compiled-for backend, else ``runtime.backend``) and falls back to the CPU with a logged reason
(runtime/select.py); :meth:`Engine.backends` says what each model got.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from . import align as _align
from . import quality as _quality
from .cards import AlignmentSpec, ModelCard, find_card
from .faces import Face
from .imageio import ImageSource, load_image
from .models.blazeface import BlazeFaceDetector
from .models.embedder import Embedder
from .models.facemesh import FaceMesh
from .runtime.select import Placement, load_placed
from .settings import ModelRole, RuntimeConfig

if TYPE_CHECKING:
    from ..config import Config

_M = TypeVar("_M")


@dataclass(frozen=True)
class DetectedFace:
    """A face with its quality verdict."""

    face: Face
    quality: _quality.Quality

    def to_dict(self) -> dict[str, Any]:
        return {**self.face.to_dict(), "quality": self.quality.to_dict()}


class Engine:
    """The recognition chain for one thread: ``load_image``, ``detect``, ``assess``, ``align``, ``embed``
    (and ``detect_and_assess`` / ``embed_detected``, the steps the daemon runs on each frame)."""

    def __init__(self, config: Config | None = None) -> None:
        if config is None:
            from ..config import Config  # here, not at import: the config package imports the owners' packages

            config = Config()
        self.config = config
        self._placements: dict[ModelRole, Placement] = {}

    # -- models, loaded lazily ------------------------------------------------------------------

    def _load(self, role: ModelRole, card: ModelCard, make: Callable[[ModelCard, RuntimeConfig], _M]) -> _M:
        """Load one model on its backend (or the CPU fallback) and record where it landed."""
        cfg = self.config

        def reference(model_id: str) -> ModelCard:
            return find_card(model_id, cfg.models.dir, task=card.task)

        model, placement = load_placed(role, card, cfg.runtime, make, reference)
        self._placements[role] = placement
        return model

    @cached_property
    def detector(self) -> BlazeFaceDetector:
        cfg = self.config
        card = find_card(cfg.models.detector, cfg.models.dir, task="detector")
        return self._load(
            "detector", card, lambda c, rt: BlazeFaceDetector(c, rt, cfg.detect, verify=cfg.models.verify_sha256)
        )

    @cached_property
    def embedder_card(self) -> ModelCard:
        """The configured embedder's card (after :attr:`embedder` loads: the card that runs, which is the
        reference's when a compiled variant fell back to the CPU; both are in one embedding space)."""
        return find_card(self.config.models.embedder, self.config.models.dir, task="embedder")

    @cached_property
    def embedder(self) -> Embedder:
        cfg = self.config

        def make(card: ModelCard, runtime: RuntimeConfig) -> Embedder:
            fixed = card.variant.batch if card.variant else 0  # a compiled file's batch cannot be resized
            return Embedder(card, runtime, verify=cfg.models.verify_sha256, max_batch=fixed or cfg.embed.batch_size)

        embedder = self._load("embedder", self.embedder_card, make)
        self.__dict__["embedder_card"] = embedder.card  # cached_property's slot: the card actually running
        return embedder

    def backends(self) -> dict[str, str]:
        """The backend each model of the configured chain runs on, by role (``detector``, ``landmarks``
        when alignment refines with it, ``embedder``), e.g. ``{"detector": "cpu", "embedder": "edgetpu"}``.
        Loads the models that are not loaded yet; a model that fell back says ``cpu``."""
        return {role: p.backend for role, p in self.placements().items()}

    def placements(self) -> dict[str, Placement]:
        """Like :meth:`backends`, with the card that runs, the backend wanted and why it fell back."""
        _ = self.detector, self.embedder, self.refiner
        order: tuple[ModelRole, ...] = ("detector", "landmarks", "embedder")
        return {role: self._placements[role] for role in order if role in self._placements}

    @property
    def flip_fusion(self) -> bool:
        """Whether embeddings fuse the mirrored chip (config, else the embedder card)."""
        spec = self.embedder_card.embedder
        assert spec is not None
        return spec.flip_fusion if self.config.embed.flip_fusion is None else self.config.embed.flip_fusion

    @cached_property
    def refiner(self) -> FaceMesh | None:
        """The landmark model that refines alignment, if the embedder's card asks for one."""
        spec = self.alignment
        if not (self.config.align.refine and spec.landmark_template and spec.landmark_model):
            return None
        cfg = self.config
        card = find_card(spec.landmark_model, cfg.models.dir, task="landmarks")
        return self._load("landmarks", card, lambda c, rt: FaceMesh(c, rt, verify=cfg.models.verify_sha256))

    @property
    def alignment(self) -> AlignmentSpec:
        spec = self.embedder_card.embedder
        assert spec is not None
        return spec.alignment

    # -- verbs ------------------------------------------------------------------------------------

    def load_image(self, source: ImageSource) -> np.ndarray:
        return load_image(source, self.config.image)

    def detect(self, image: np.ndarray) -> list[Face]:
        return self.detector.detect(image)

    def assess(self, image: np.ndarray, face: Face) -> _quality.Quality:
        return _quality.assess(image, face, self.config.quality)

    def detect_and_assess(self, image: np.ndarray) -> list[DetectedFace]:
        return [DetectedFace(f, self.assess(image, f)) for f in self.detect(image)]

    def refine(self, image: np.ndarray, face: Face) -> Face:
        """``face`` with dense landmarks, when the embedder's alignment uses them."""
        if self.refiner is None or face.landmarks is not None:
            return face
        return self.refiner.refine(image, face)

    def align(self, image: np.ndarray, face: Face) -> np.ndarray:
        return _align.align(image, self.refine(image, face), self.alignment)

    def embed(self, chips: np.ndarray) -> np.ndarray:
        """L2-normalised embeddings of aligned chips: (D,) for one chip, (N, D) for a batch."""
        return self.embedder.embed(chips, flip_fusion=self.flip_fusion)

    def embed_detected(self, image: np.ndarray, detected: list[DetectedFace]) -> list[np.ndarray | None]:
        """The embedding of each face that passed the quality gate (aligned and embedded as one batch),
        None for each refused one; in the order of ``detected``."""
        out: list[np.ndarray | None] = [None] * len(detected)
        passed = [i for i, d in enumerate(detected) if d.quality.passed]
        if passed:
            chips = np.stack([self.align(image, detected[i].face) for i in passed])
            vecs = np.atleast_2d(self.embed(chips))
            for k, i in enumerate(passed):
                out[i] = vecs[k]
        return out
