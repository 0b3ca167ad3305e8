"""An opened gallery and the open-set decision: top-k candidates with scores, or "no match".

A match is a lead, never an identification: :meth:`Gallery.identify` always returns the best
candidates with their cosine similarities; ``match`` is the best one only when it reaches the
threshold the bundle carries (the embedder card's calibrated value) or the configured override.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..errors import BundleRejected
from ..logs import get_logger
from .bundle import (
    ENTRIES,
    IDENTITIES,
    INDEX,
    LABELS,
    MANIFEST,
    PROJECTION,
    SIGNATURE,
    VECTORS,
    check_acceptable,
    read_signed_manifest,
)
from .crypto import RamFile, decrypt_chunks, decrypt_to_ram
from .index import SearchPlan, VectorIndex, plan_for
from .manifest import FileEntry, Manifest

log = get_logger(__name__)


@dataclass(frozen=True)
class Candidate:
    identity: str
    name: str
    score: float
    row: int  # the best-matching enrolled image (see Gallery.entry)

    def to_dict(self) -> dict[str, Any]:
        return {"identity": self.identity, "name": self.name, "score": round(self.score, 4), "row": self.row}


@dataclass(frozen=True)
class Decision:
    match: Candidate | None  # the best candidate if it reaches the threshold, else None ("no match")
    candidates: list[Candidate]
    threshold: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "match": self.match.to_dict() if self.match else None,
            "threshold": self.threshold,
            "candidates": [c.to_dict() for c in self.candidates],
        }


class BundleReader:
    """Plaintext access to a bundle folder's files, decrypting with the device key when given."""

    def __init__(self, directory: Path, key: bytes | None = None) -> None:
        self.dir = Path(directory)
        self.key = key
        self._ram: list[RamFile] = []

    def read_small(self, name: str) -> bytes | None:
        p = self.dir / name
        return p.read_bytes() if p.exists() else None

    def materialize(self, name: str, want: FileEntry | None, verify: bool = True) -> Path:
        """A path to the plaintext of ``name`` (the file itself, or a RAM copy), checked against ``want``."""
        src = self.dir / name
        if self.key is None:
            if not src.exists():
                raise BundleRejected("missing_file", f"{src} is missing; the gallery is incomplete")
            if verify and want is not None:
                from .bundle import check_file

                check_file(src, name, want)
            return src
        ram, got = decrypt_to_ram(src, self.key, name)
        self._ram.append(ram)
        if verify and want is not None and got != want:
            raise BundleRejected("hash_mismatch", f"{src}: decrypted content does not match the signed manifest")
        return ram.path

    def digest(self, name: str) -> FileEntry:
        """SHA-256 and size of the plaintext, streamed (nothing kept in memory)."""
        import hashlib

        h, n = hashlib.sha256(), 0
        for block in self.chunks(name):
            h.update(block)
            n += len(block)
        return FileEntry(h.hexdigest(), n)

    def chunks(self, name: str) -> Iterator[bytes]:
        if self.key is None:
            with open(self.dir / name, "rb") as f:
                yield from iter(lambda: f.read(1 << 20), b"")
        else:
            yield from decrypt_chunks(self.dir / name, self.key, name)

    def close(self) -> None:
        for r in self._ram:
            r.close()
        self._ram.clear()


class _Lines:
    """Random access to the lines of an NDJSON file without parsing all of them."""

    def __init__(self, path: Path) -> None:
        self.data = np.memmap(path, dtype=np.uint8, mode="r") if path.stat().st_size else np.zeros(0, np.uint8)
        ends = np.flatnonzero(self.data == ord("\n"))
        self.starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64) if len(ends) else np.zeros(0, np.int64)
        self.ends = ends

    def __len__(self) -> int:
        return len(self.ends)

    def raw(self, i: int) -> bytes:
        return bytes(self.data[self.starts[i] : self.ends[i] + 1])

    def __getitem__(self, i: int) -> dict[str, Any]:
        entry: dict[str, Any] = json.loads(self.raw(i))
        return entry


@dataclass
class Gallery:
    """A verified gallery, ready to search. Not thread-safe to close while searching; search is read-only."""

    manifest: Manifest
    dir: Path
    vectors: np.ndarray
    labels: np.ndarray
    identities: _Lines
    entries: _Lines
    index: VectorIndex
    key_id: str
    _reader: BundleReader = field(repr=False)
    top_k: int = 5  # identify()'s defaults (gallery.top_k, gallery.threshold)
    threshold: float | None = None

    @classmethod
    def open(
        cls,
        directory: Path,
        trusted: Sequence[Ed25519PublicKey],
        *,
        key: bytes | None = None,
        verify: bool = True,
        embedder_sha256: str | None = None,
        exact_max: int | None = None,
        search_k: int | None = None,
        top_k: int = 5,
        threshold: float | None = None,
    ) -> Gallery:
        """Open a bundle folder (plain, or encrypted with the device ``key``) after checking its signature,
        its embedder and (``verify``) every file against the signed manifest."""
        from . import signing

        reader = BundleReader(Path(directory), key)
        data = reader.read_small(MANIFEST)
        if data is None:
            raise BundleRejected("missing_file", f"{directory}: no {MANIFEST}")
        sig = reader.read_small(SIGNATURE)
        kid = signing.verify(data, sig, trusted, what=f"{directory}/{MANIFEST}")
        manifest = read_signed_manifest(data, sig, trusted, str(directory))
        check_acceptable(manifest, embedder_sha256=embedder_sha256, where=str(directory))
        plan = plan_for(
            manifest.count, exact_max=exact_max, search_k=search_k, trees=int(manifest.index.get("trees", 0)) or None
        )
        try:
            files = {
                n: reader.materialize(n, manifest.files[n], verify)
                for n in (VECTORS, LABELS, IDENTITIES, ENTRIES, PROJECTION)
            }
            # the index is derived data: a device may have rebuilt it from a delta (see delta.py)
            local = _local_index_entry(Path(directory))
            want_index = local or manifest.files[INDEX]
            index_path = None if plan.exact else reader.materialize(INDEX, want_index, verify)
            if plan.exact and verify and reader.digest(INDEX) != want_index:  # unused now, refused all the same
                raise BundleRejected("hash_mismatch", f"{directory}/{INDEX} does not match the signed manifest")
            vectors = np.load(files[VECTORS], mmap_mode="r")
            labels = np.load(files[LABELS], mmap_mode="r")
            if vectors.shape != (manifest.count, manifest.embedder.dim) or vectors.dtype != np.float32:
                raise BundleRejected(
                    "format",
                    f"{directory}: vectors are {vectors.dtype} {vectors.shape}, the "
                    f"manifest says float32 ({manifest.count}, {manifest.embedder.dim})",
                )
            index = VectorIndex(vectors, index_path, plan, np.load(files[PROJECTION]))
            g = cls(
                manifest,
                Path(directory),
                vectors,
                labels,
                _Lines(files[IDENTITIES]),
                _Lines(files[ENTRIES]),
                index,
                kid,
                reader,
                top_k,
                threshold,
            )
        except BaseException:
            reader.close()
            raise
        log.info(
            "gallery.opened",
            dir=str(directory),
            version=manifest.gallery_version,
            count=manifest.count,
            identities=manifest.identities,
            exact=plan.exact,
            search_k=plan.search_k,
            encrypted=key is not None,
        )
        return g

    @property
    def version(self) -> int:
        return self.manifest.gallery_version

    @property
    def plan(self) -> SearchPlan:
        return self.index.plan

    def __len__(self) -> int:
        return len(self.vectors)

    def identity(self, position: int) -> dict[str, Any]:
        return self.identities[position]

    def entry(self, row: int) -> dict[str, Any]:
        """The enrolled image behind a row: identity, image SHA-256 and its provenance."""
        return self.entries[row]

    def search(self, embedding: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw top-k rows and cosine similarities (rows of the same identity not merged)."""
        return self.index.search(embedding, k)

    def identify(self, embedding: np.ndarray, top_k: int | None = None, threshold: float | None = None) -> Decision:
        """The ``top_k`` best distinct identities for an L2-normalised embedding, and the decision.

        ``threshold`` defaults to the one given at open (``gallery.threshold``), else the bundle's
        calibrated threshold for its embedder.
        """
        top_k = top_k or self.top_k
        thr = threshold if threshold is not None else self.threshold
        thr = self.manifest.threshold if thr is None else float(thr)
        rows, scores = self.index.search(embedding, min(len(self), max(top_k * 4, top_k + 8)))
        best: dict[int, tuple[float, int]] = {}
        for r, s in zip(rows.tolist(), scores.tolist(), strict=True):
            lab = int(self.labels[r])
            if lab not in best:
                best[lab] = (s, r)
        cands = []
        for lab, (s, r) in list(best.items())[:top_k]:
            ident = self.identities[lab]
            cands.append(Candidate(str(ident["id"]), str(ident.get("name", ident["id"])), float(s), int(r)))
        match = cands[0] if cands and cands[0].score >= thr else None
        return Decision(match, cands, thr)

    def close(self) -> None:
        self.index.close()
        self._reader.close()


LOCAL_INDEX = "local-index.json"


def _local_index_entry(directory: Path) -> FileEntry | None:
    """A device-side note that index.ann was rebuilt here and differs from the server's bytes."""
    p = directory / LOCAL_INDEX
    if not p.exists():
        return None
    d = json.loads(p.read_text())
    return FileEntry(str(d["sha256"]), int(d["size"]))


__all__ = ["Gallery", "Candidate", "Decision", "BundleReader", "LOCAL_INDEX"]
