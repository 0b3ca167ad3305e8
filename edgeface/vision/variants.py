"""Variant cards: another runtime's form of a reference embedder, in the reference's embedding space.

A variant is a different file (an Edge TPU compiled model, the same model with a fixed batch) that computes
what the reference computes, on another backend. Its card is the reference's card with its own id, file and
SHA-256, plus a ``[variant]`` table: the reference's id and hash, the backend the file needs, the fixed batch
and the *fidelity* measured here: cosine between the variant's and the reference's embeddings of the same
chips. Galleries built with the reference are accepted by a unit running the variant (same space), so this
figure is what says they may be: a low one means re-embedding the gallery with the variant instead.

:func:`make_variant_card` measures and writes such a card (``models/make_variant_card.py`` is its command).
Run it where the variant's backend really is (a unit with the Coral attached), or the figure says nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path

import numpy as np

from ..errors import ModelError
from .cards import FidelitySpec, ModelCard, VariantSpec, check_variant, load_card
from .models.embedder import Embedder
from .settings import BackendName, RuntimeConfig


def embedder_fidelity(
    variant: ModelCard, reference: ModelCard, chips: np.ndarray, runtime: RuntimeConfig
) -> tuple[float, float]:
    """(min, mean) cosine between the variant's embeddings (on its backend) and the reference's (on the CPU)."""
    if variant.variant is None:
        raise ModelError(f"model {variant.id} has no [variant] table")
    backend: BackendName = variant.variant.backend or "cpu"
    ref = Embedder(reference, runtime.with_backend("cpu"))
    var = Embedder(variant, runtime.with_backend(backend), max_batch=variant.variant.batch or 8)
    a = ref.embed(chips, flip_fusion=False)
    b = var.embed(chips, flip_fusion=False)
    cos = np.sum(np.atleast_2d(a) * np.atleast_2d(b), axis=1)
    return float(cos.min()), float(cos.mean())


def _set_top_level(text: str, key: str, value: str) -> str:
    """Replace ``key = ...`` before the first table header (the card's top-level keys)."""
    head, sep, tail = text.partition("\n[")
    new, n = re.subn(rf"(?m)^{key} = .*$", lambda _: f"{key} = {value}", head, count=1)
    if n != 1:
        raise ModelError(f"the reference card has no top-level {key}")
    return new + sep + tail


def make_variant_card(
    reference: ModelCard,
    model_file: Path,
    *,
    model_id: str,
    backend: BackendName,
    chips: np.ndarray,
    runtime: RuntimeConfig | None = None,
    batch: int = 0,
    made_with: str = "",
    hardware: str = "",
) -> ModelCard:
    """Measure ``model_file`` against ``reference`` on ``chips`` and write ``<model_id>.toml`` beside it.

    ``backend`` is the backend the file needs (``edgetpu`` for a compiled file, ``cpu`` for a re-serialised
    one); ``batch`` its fixed input batch (1 for compiled files, 0 for any). ``made_with`` says how the file
    was made (the compile command) and ``hardware`` where the fidelity was measured; both go in the card.
    """
    if reference.embedder is None or reference.variant is not None:
        raise ModelError(f"model {reference.id} is not a reference embedder (an embedder card with no [variant])")
    runtime = runtime or RuntimeConfig()
    content = Path(model_file).read_bytes()
    sha = hashlib.sha256(content).hexdigest()
    card_path = Path(model_file).parent / f"{model_id}.toml"
    spec = VariantSpec(of=reference.id, of_sha256=reference.sha256, backend=backend, fidelity=None, batch=batch)
    draft = dataclasses.replace(
        reference, id=model_id, file=Path(model_file).name, sha256=sha, path=card_path, variant=spec
    )
    lo, mean = embedder_fidelity(draft, reference, chips, runtime)
    measured = f"{len(chips)} aligned chips, {reference.id} on the CPU vs this file on {backend}" + (
        f" ({hardware})" if hardware else ""
    )
    text = reference.path.read_text(encoding="utf-8")
    text = _set_top_level(text, "id", f'"{model_id}"')
    text = _set_top_level(text, "name", f'"{reference.name} [{backend} variant]"')
    text = _set_top_level(text, "file", f'"{Path(model_file).name}"')
    text = _set_top_level(text, "sha256", f'"{sha}"')
    if not re.search(r"(?m)^embedding_space = ", text.partition("\n[")[0]):
        text = _set_top_level(text, "task", f'"embedder"\nembedding_space = "{reference.embedder.space}"')
    text = text.rstrip("\n") + (
        "\n\n[variant]\n"
        f"# Another runtime's form of {reference.id}: same computation, its own file; galleries of its space serve it.\n"
        + (f"# Made with: {made_with}\n" if made_with else "")
        + f'of = "{reference.id}"\n'
        f'of_sha256 = "{reference.sha256}"\n'
        f'backend = "{backend}"\n'
        f"batch = {batch}\n"
        "\n[variant.fidelity]   # cosine of this file's embeddings to the reference's, same chips\n"
        f"min_cosine = {np.floor(lo * 1e6) / 1e6:.6f}\n"
        f"mean_cosine = {np.floor(mean * 1e6) / 1e6:.6f}\n"
        f'measured = "{measured}"\n'
    )
    card_path.write_text(text, encoding="utf-8")
    card = load_card(card_path)
    check_variant(card, reference)
    return card


__all__ = ["FidelitySpec", "embedder_fidelity", "make_variant_card"]
