"""Face embedding: aligned chips in, L2-normalised vectors out, with the model chosen by its card.

Any embedder whose card gives its input spec, output tensor, dimension and alignment template works
with no code change (dlib's ResNet by default; an ArcFace or MobileFaceNet ``.tflite`` with a card).
"""

from __future__ import annotations

import numpy as np

from ...errors import ModelError
from ..cards import ModelCard
from ..runtime import TFLiteModel
from ..settings import RuntimeConfig


class Embedder:
    """Runs an embedder model described by its card. Owns its interpreter (one per thread)."""

    def __init__(
        self, card: ModelCard, runtime: RuntimeConfig | None = None, *, verify: bool = True, max_batch: int = 8
    ) -> None:
        if card.embedder is None:
            raise ModelError(f"model {card.id} is a {card.task}, not an embedder")
        self.card = card
        self.spec = card.embedder
        self.model = TFLiteModel(card.read_model(verify), runtime, name=card.id)
        self._out = self.model.output_index(self.spec.output)
        got = self.model.outputs[self._out].shape[-1]
        if got != self.spec.dim:
            raise ModelError(f"model {card.id}: card says {self.spec.dim}-d embeddings, the model outputs {got}")
        self.max_batch = max(1, max_batch)

    @property
    def dim(self) -> int:
        return self.spec.dim

    def _prepare(self, chips: np.ndarray) -> np.ndarray:
        inp = self.card.input
        if chips.shape[1:] != (inp.height, inp.width, 3) or chips.dtype != np.uint8:
            raise ValueError(
                f"{self.card.id} wants uint8 chips of {inp.height}x{inp.width}x3 (from align()), got "
                f"{chips.dtype} {chips.shape[1:]}"
            )
        if inp.colour == "BGR":
            chips = chips[..., ::-1]
        return chips.astype(np.float32) * inp.scale + inp.offset

    def raw(self, chips: np.ndarray) -> np.ndarray:
        """The model's output vectors, not normalised, for a batch (N, H, W, 3) of chips."""
        chips = np.asarray(chips)
        if chips.ndim == 3:
            chips = chips[None]
        out = np.empty((len(chips), self.dim), dtype=np.float32)
        for start in range(0, len(chips), self.max_batch):
            batch = self._prepare(chips[start : start + self.max_batch])
            out[start : start + len(batch)] = self.model.run(batch)[self._out].reshape(len(batch), -1)
        return out

    def embed(self, chips: np.ndarray, *, flip_fusion: bool | None = None) -> np.ndarray:
        """L2-normalised embeddings: (D,) for one chip (H, W, 3), (N, D) for a batch (N, H, W, 3).

        With flip fusion (default: the card's choice) each vector is the normalised sum of the chip's
        and its mirror image's embeddings, which averages out left/right asymmetries of pose and light.
        """
        chips = np.asarray(chips)
        single = chips.ndim == 3
        if single:
            chips = chips[None]
        vecs = self.raw(chips)
        if self.spec.flip_fusion if flip_fusion is None else flip_fusion:
            vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
            mirrored = self.raw(np.ascontiguousarray(chips[:, :, ::-1]))
            vecs += mirrored / np.maximum(np.linalg.norm(mirrored, axis=1, keepdims=True), 1e-12)
        vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        return vecs[0] if single else vecs
