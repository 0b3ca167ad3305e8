"""Helpers shared by the gallery tests: test content that changes by a few rows, a recording server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgeface.evaluation.distractors import sample, toy_model
from edgeface.gallery.manifest import EmbedderRef
from edgeface.gallery.publish import publish
from edgeface.gallery.serve import GalleryFiles

EMBEDDER = EmbedderRef("test-embedder", "ab" * 32, 128)
OTHER_EMBEDDER = EmbedderRef("other-embedder", "cd" * 32, 128)
THRESHOLDS = {"cosine": 0.8}


class Content:
    """A gallery's content (what enrollment produces), easy to change by a few rows."""

    def __init__(self, identities: int, seed: int = 0) -> None:
        v, lab = sample(toy_model(), identities, (1, 3), seed=seed)
        self.vectors = v
        self.entries = [
            {
                "identity": f"id{seed}-{int(p)}",
                "image": f"{seed:08x}{i:056x}",
                "source": "synthetic",
                "consent": "test",
                "enrolled_by": "pytest",
                "enrolled_at": "2025-01-01T00:00:00Z",
            }
            for i, p in enumerate(lab)
        ]
        self.identities = [{"id": f"id{seed}-{p}", "name": f"Person {p}"} for p in range(identities)]

    def change(self, remove: int, add: int, seed: int = 99) -> Content:
        """A copy with the first ``remove`` rows gone and ``add`` new single-image identities."""
        out = Content.__new__(Content)
        nv, _ = sample(toy_model(), add, 1, seed=seed)
        out.vectors = np.concatenate([self.vectors[remove:], nv])
        new_ids = [{"id": f"new{seed}-{i}", "name": f"New {i}"} for i in range(add)]
        out.entries = self.entries[remove:] + [
            {
                "identity": f"new{seed}-{i}",
                "image": f"{seed:08x}{i + 10**9:056x}",
                "source": "synthetic",
                "consent": "test",
                "enrolled_by": "pytest",
                "enrolled_at": "2025-01-02T00:00:00Z",
            }
            for i in range(add)
        ]
        out.identities = self.identities + new_ids
        return out

    def publish(self, root: Path, signer: Ed25519PrivateKey, embedder: EmbedderRef = EMBEDDER, **kw: Any):  # type: ignore[no-untyped-def]
        return publish(
            root,
            vectors=self.vectors,
            entries=self.entries,
            identities=self.identities,
            embedder=embedder,
            thresholds=THRESHOLDS,
            signer=signer,
            **kw,
        )


class Recorder:
    """WSGI middleware: records requests, and can cut one response short (a dropped connection)."""

    def __init__(self, app: GalleryFiles) -> None:
        self.app = app
        self.requests: list[dict[str, Any]] = []
        self.truncate: dict[str, int] = {}  # path suffix -> bytes to send before dropping (once)
        self.bytes_sent = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        path = environ.get("PATH_INFO", "")
        self.requests.append(
            {"path": path, "range": environ.get("HTTP_RANGE"), "if_none_match": environ.get("HTTP_IF_NONE_MATCH")}
        )
        cut = next((self.truncate.pop(k) for k in list(self.truncate) if path.endswith(k)), None)
        sent = 0
        for block in self.app(environ, start_response):
            if cut is not None and sent + len(block) > cut:
                block = block[: cut - sent]
                self.bytes_sent += len(block)
                yield block
                raise ConnectionAbortedError("test: connection dropped")
            sent += len(block)
            self.bytes_sent += len(block)
            yield block
