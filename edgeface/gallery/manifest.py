"""The bundle manifest: what a gallery bundle contains, for which embedder, and every file's SHA-256.

The manifest is the one signed document of a bundle (``manifest.sig`` signs its exact bytes); every
other file is trusted only through the hash the manifest gives for it. Format (``format_version`` 1)::

    {"format": "edgeface-gallery", "format_version": 1, "gallery_version": 12,
     "created": "2025-01-01T00:00:00Z",
     "embedder": {"id": "dlib-resnet-v1-int8", "sha256": "...", "dim": 128, "metric": "cosine",
                  "space": "dlib-resnet-v1-int8"},
     "thresholds": {"cosine": 0.5}, "count": 1000, "identities": 400,
     "index": {"kind": "annoy", "metric": "angular", "trees": 20, "seed": 1},
     "files": {"vectors.npy": {"sha256": "...", "size": 512128}, ...}}

A bundle published with score normalisation (edgeface/gallery/cohort.py) also has
``"normalisation": {"method": "s-norm", "top_k": 200, "files": ["norm_stats.npy", ...], ...}`` and a
``thresholds.normalised`` decision threshold in that score's space; ``thresholds.cosine`` stays the raw
threshold, so a unit that predates normalisation (it ignores the section) still decides correctly.

``embedder.space`` names the embedding space of the vectors (the embedder card's ``embedding_space``); a
unit accepts a bundle from any model file in its own space (:class:`UnitEmbedder`), so a compiled variant
of the model (Edge TPU) uses the galleries built with the reference. Manifests written before spaces
existed have no ``space``: they are accepted by file hash alone, as before.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import BundleRejected

FORMAT = "edgeface-gallery"
FORMAT_VERSION = 1
MAX_MANIFEST_BYTES = 1 << 20  # a manifest lists a handful of files; anything bigger is not one


@dataclass(frozen=True)
class FileEntry:
    sha256: str
    size: int


@dataclass(frozen=True)
class EmbedderRef:
    """The embedder a gallery's vectors come from; a device uses a bundle only from its embedding space."""

    id: str
    sha256: str
    dim: int
    metric: str = "cosine"
    space: str = ""  # the embedding space; "" in manifests written before spaces existed


@dataclass(frozen=True)
class UnitEmbedder:
    """What a unit's embedder accepts galleries from: model files in its embedding space.

    ``sha256`` is the unit's own model file; ``space_sha256`` every file its card puts in the same space
    (its own, and the reference a compiled variant was built from). A bundle is accepted when its embedder
    is one of those files, or names the same space with the same dimension."""

    sha256: str
    space: str = ""
    space_sha256: frozenset[str] = frozenset()
    dim: int | None = None
    models: tuple[str, ...] = ()  # ids whose published folders serve it: its own, then its reference's

    def accepts(self, ref: EmbedderRef) -> bool:
        if ref.sha256 == self.sha256 or ref.sha256 in self.space_sha256:
            return True
        return bool(self.space) and ref.space == self.space and (self.dim is None or ref.dim == self.dim)

    def describe(self) -> str:
        return (
            f"space {self.space!r}, model {self.sha256[:12]}"
            if self.space
            else f"a model with SHA-256 {self.sha256[:12]}"
        )


@dataclass(frozen=True)
class Manifest:
    gallery_version: int
    embedder: EmbedderRef
    thresholds: dict[str, float]
    count: int
    identities: int
    index: dict[str, Any]
    files: dict[str, FileEntry]
    normalisation: dict[str, Any] | None = None  # None: raw cosine decisions only (see cohort.py)
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    format_version: int = FORMAT_VERSION

    @property
    def threshold(self) -> float:
        """The calibrated similarity threshold for the embedder's metric."""
        return float(self.thresholds[self.embedder.metric])

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files.values())

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "format": FORMAT,
            "format_version": self.format_version,
            "gallery_version": self.gallery_version,
            "created": self.created,
            "embedder": {
                "id": self.embedder.id,
                "sha256": self.embedder.sha256,
                "dim": self.embedder.dim,
                "metric": self.embedder.metric,
                **({"space": self.embedder.space} if self.embedder.space else {}),
            },
            "thresholds": dict(self.thresholds),
            "count": self.count,
            "identities": self.identities,
            "index": dict(self.index),
            "files": {name: {"sha256": f.sha256, "size": f.size} for name, f in sorted(self.files.items())},
        }
        if self.normalisation is not None:
            d["normalisation"] = dict(self.normalisation)
        return d

    def to_bytes(self) -> bytes:
        return (json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "manifest.json") -> Manifest:
        """Parse and check the structure; raises :class:`BundleRejected` ("format") if it is not a manifest."""

        def bad(why: str) -> BundleRejected:
            return BundleRejected("format", f"{where} is not a valid gallery manifest: {why}")

        if len(data) > MAX_MANIFEST_BYTES:
            raise bad(f"{len(data)} bytes, more than {MAX_MANIFEST_BYTES}")
        try:
            d = json.loads(data)
            if d.get("format") != FORMAT:
                raise bad(f"format is {d.get('format')!r}, expected {FORMAT!r}")
            if d.get("format_version") != FORMAT_VERSION:
                raise bad(
                    f"format_version {d.get('format_version')} (this edgeface reads {FORMAT_VERSION}); "
                    "upgrade edgeface on this unit"
                )
            e = d["embedder"]
            files = {}
            for name, f in d["files"].items():
                if "/" in name or name.startswith(".") or not name:
                    raise bad(f"file name {name!r} is not a plain file name")
                sha, size = str(f["sha256"]), int(f["size"])
                if len(sha) != 64 or size < 0:
                    raise bad(f"file {name}: bad sha256 or size")
                files[name] = FileEntry(sha, size)
            m = cls(
                gallery_version=int(d["gallery_version"]),
                embedder=EmbedderRef(
                    str(e["id"]), str(e["sha256"]), int(e["dim"]), str(e["metric"]), str(e.get("space", ""))
                ),
                thresholds={str(k): float(v) for k, v in d["thresholds"].items()},
                count=int(d["count"]),
                identities=int(d["identities"]),
                index=dict(d["index"]),
                files=files,
                normalisation=None if d.get("normalisation") is None else dict(d["normalisation"]),
                created=str(d["created"]),
            )
        except BundleRejected:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as ex:
            raise bad(f"{type(ex).__name__}: {ex}") from None
        if m.gallery_version < 1 or m.count < 0:
            raise bad("gallery_version must be >= 1 and count >= 0")
        if m.embedder.metric not in m.thresholds:
            raise bad(f"no threshold for the embedder's metric {m.embedder.metric!r}")
        if m.normalisation is not None:
            listed = m.normalisation.get("files")
            if not isinstance(listed, list) or any(str(n) not in m.files for n in listed):
                raise bad("normalisation names files the manifest does not list")
            if "normalised" not in m.thresholds:
                raise bad("normalisation without a thresholds.normalised decision threshold")
        return m


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_stream(f: BinaryIO, chunk: int = 1 << 20) -> tuple[str, int]:
    h, n = hashlib.sha256(), 0
    while block := f.read(chunk):
        h.update(block)
        n += len(block)
    return h.hexdigest(), n


def file_entry(path: Path) -> FileEntry:
    return FileEntry(sha256_file(path), path.stat().st_size)
