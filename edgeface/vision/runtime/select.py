"""Which backend each model runs on, and the fall back to the CPU when that backend cannot be loaded.

The backend of a model is, in order: its role's own setting (``runtime.detector_backend``,
``landmarks_backend``, ``embedder_backend``), the backend its card's ``[variant]`` was compiled for, then
``runtime.backend``. When it cannot be loaded (no device, no delegate library, the delegate refuses the
model) the model runs on the CPU and one ``model.backend_fallback`` warning says which model, which
backend and why; ``runtime.fallback = false`` makes that an error instead. A file compiled for an
accelerator (an Edge TPU model) does not run without it, so its fallback is the reference model it was
compiled from, found by the card's ``variant.of``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from ...errors import BackendUnavailable, ConfigError, ModelError
from ...logs import get_logger
from ..cards import ModelCard, check_variant
from ..settings import BackendName, ModelRole, RuntimeConfig

log = get_logger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Placement:
    """Where one model runs: the card actually loaded, the backend it got and the one that was wanted."""

    role: ModelRole
    card: ModelCard  # the reference's card when a compiled variant fell back
    backend: BackendName  # what it runs on
    wanted: BackendName  # what the configuration (or the card) asked for
    reason: str = ""  # why it fell back; "" when it got what was wanted

    @property
    def fell_back(self) -> bool:
        return self.backend != self.wanted

    def to_dict(self) -> dict[str, str]:
        return {
            "role": self.role,
            "model": self.card.id,
            "backend": self.backend,
            "wanted": self.wanted,
            "reason": self.reason,
        }


def backend_for(role: ModelRole, card: ModelCard, runtime: RuntimeConfig) -> BackendName:
    """The backend ``card``'s model should run on in ``role`` (see the module docstring for the order)."""
    configured = runtime.backend_for(role)
    needed = card.variant.backend if card.variant else None
    if needed and configured and configured != needed:
        raise ConfigError(
            f"runtime.{role}_backend = {configured!r}, but model {card.id} is compiled for {needed!r}. Set "
            f"runtime.{role}_backend = {needed!r} (or leave it unset), or choose the model it was built from "
            f"({card.variant.of if card.variant else '?'})."
        )
    return configured or needed or runtime.backend


def load_placed(
    role: ModelRole,
    card: ModelCard,
    runtime: RuntimeConfig,
    make: Callable[[ModelCard, RuntimeConfig], T],
    find_reference: Callable[[str], ModelCard],
) -> tuple[T, Placement]:
    """``make(card, runtime)`` on the model's backend, else on the CPU (see the module docstring).

    ``make`` builds the model object (detector, landmark model, embedder) for a card and a runtime whose
    ``backend`` is the one to use; ``find_reference`` finds a card by id (for a compiled variant's fallback).
    """
    backend = backend_for(role, card, runtime)
    try:
        return make(card, runtime.with_backend(backend)), Placement(role, card, backend, backend)
    except BackendUnavailable as e:
        if backend == "cpu" or not runtime.fallback:
            raise
        reason = str(e)
        target = card
        if card.variant is not None and card.variant.backend not in (None, "cpu"):
            try:
                target = find_reference(card.variant.of)
                check_variant(card, target)
            except ModelError as ref_error:
                raise BackendUnavailable(
                    f"model {card.id} is compiled for {backend} and cannot run on the CPU, and its reference model "
                    f"is not usable ({ref_error}). First: {reason}"
                ) from e
        log.warning(
            "model.backend_fallback",
            role=role,
            model=card.id,
            backend=backend,
            runs=target.id,
            on="cpu",
            reason=reason,
        )
        return make(target, runtime.with_backend("cpu")), Placement(role, target, "cpu", backend, reason)
