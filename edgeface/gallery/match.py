"""An opened gallery and the open-set decision: top-k candidates with scores, or "no match".

A match is a lead, never an identification: :meth:`Gallery.identify` always returns the best
candidates with their scores; ``match`` is the best one only when it reaches the decision threshold.

Two score spaces (``Decision.space`` says which one decided):

- ``normalised`` (bundles published with normalisation, the default since cohort.py): each candidate's
  S-norm score of its identity template; candidates ranked by it; threshold ``thresholds.normalised``
  (derived for the gallery's size and ``gallery.target_fpir``), or ``gallery.normalised_threshold``.
- ``cosine``: the raw cosine of the identity's best-matching image; threshold ``thresholds.cosine`` (the
  card's impostor tail). Used for bundles without normalisation (published before it, or too small) and
  whenever ``gallery.threshold`` is set: that override is a raw cosine, as it always was.

Every candidate carries its raw cosine (``score``) and, where the bundle has normalisation, its
``normalised`` score, so a reviewer sees both.
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
    NORM_FILES,
    PROJECTION,
    SIGNATURE,
    VECTORS,
    check_acceptable,
    read_signed_manifest,
)
from .cohort import COHORT, COHORT_LABELS, STATS, IdentityRows, Normaliser, assemble
from .crypto import RamFile, decrypt_chunks, decrypt_to_ram
from .index import SearchPlan, VectorIndex, plan_for
from .manifest import FileEntry, Manifest, UnitEmbedder
from .scoring import Space, pool_size, rank

log = get_logger(__name__)


@dataclass(frozen=True)
class Candidate:
    identity: str
    name: str
    score: float  # raw cosine of the identity's best-matching enrolled image
    row: int  # that image (see Gallery.entry)
    normalised: float | None = None  # S-norm score of the identity's template; None without normalisation

    def decided_on(self, space: Space) -> float:
        """The score a decision in ``space`` compares with its threshold."""
        if space == "normalised":
            if self.normalised is None:
                raise ValueError(f"candidate {self.identity} has no normalised score")
            return self.normalised
        return self.score

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"identity": self.identity, "name": self.name, "score": round(self.score, 4)}
        if self.normalised is not None:
            d["normalised"] = round(self.normalised, 4)
        d["row"] = self.row
        return d


@dataclass(frozen=True)
class Decision:
    match: Candidate | None  # the best candidate if it reaches the threshold, else None ("no match")
    candidates: list[Candidate]  # best first in ``space``
    threshold: float  # in ``space``
    space: Space = "cosine"  # which score the threshold applies to: "cosine" (raw) or "normalised"

    def to_dict(self) -> dict[str, Any]:
        return {
            "match": self.match.to_dict() if self.match else None,
            "threshold": self.threshold,
            "space": self.space,
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
    top_k: int = 5  # identify()'s defaults (gallery.top_k, gallery.threshold, gallery.normalised_threshold)
    threshold: float | None = None
    normalised_threshold: float | None = None
    normaliser: Normaliser | None = None  # None: the bundle has no normalisation (raw decisions)
    by_identity: IdentityRows | None = field(default=None, repr=False)

    @classmethod
    def open(
        cls,
        directory: Path,
        trusted: Sequence[Ed25519PublicKey],
        *,
        key: bytes | None = None,
        verify: bool = True,
        embedder_sha256: str | None = None,
        embedder: UnitEmbedder | None = None,
        exact_max: int | None = None,
        search_k: int | None = None,
        top_k: int = 5,
        threshold: float | None = None,
        normalised_threshold: float | None = None,
    ) -> Gallery:
        """Open a bundle folder (plain, or encrypted with the device ``key``) after checking its signature,
        its embedder and (``verify``) every file against the signed manifest (normalisation files too).

        A bundle without normalisation (published before it) opens as before and decides on raw cosine."""
        from . import signing

        reader = BundleReader(Path(directory), key)
        data = reader.read_small(MANIFEST)
        if data is None:
            raise BundleRejected("missing_file", f"{directory}: no {MANIFEST}")
        sig = reader.read_small(SIGNATURE)
        kid = signing.verify(data, sig, trusted, what=f"{directory}/{MANIFEST}")
        manifest = read_signed_manifest(data, sig, trusted, str(directory))
        check_acceptable(manifest, embedder_sha256=embedder_sha256, embedder=embedder, where=str(directory))
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
            norm = _load_normaliser(reader, manifest, verify, Path(directory), vectors, labels)
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
                normalised_threshold,
                norm.normaliser if norm is not None else None,
                norm.by_identity if norm is not None else None,
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
            normalised=norm is not None,
            cohort=0 if norm is None else len(norm.normaliser.cohort),
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

    def decision_rule(
        self, threshold: float | None = None, normalised_threshold: float | None = None
    ) -> tuple[Space, float]:
        """The space and threshold a decision uses (see the module docstring for the precedence)."""
        raw = threshold if threshold is not None else self.threshold
        if raw is not None:
            return "cosine", float(raw)
        if self.normaliser is not None:
            t = normalised_threshold if normalised_threshold is not None else self.normalised_threshold
            return "normalised", float(self.manifest.thresholds["normalised"] if t is None else t)
        return "cosine", self.manifest.threshold

    def identify(
        self,
        embedding: np.ndarray,
        top_k: int | None = None,
        threshold: float | None = None,
        normalised_threshold: float | None = None,
    ) -> Decision:
        """The ``top_k`` best distinct identities for an L2-normalised embedding, and the decision.

        ``threshold`` (raw cosine) defaults to ``gallery.threshold`` given at open; when neither is set,
        a normalised bundle decides on its normalised threshold (or ``normalised_threshold``), any other
        on its calibrated cosine threshold.
        """
        top_k = top_k or self.top_k
        space, thr = self.decision_rule(threshold, normalised_threshold)
        rows, scores = self.index.search(embedding, min(len(self), pool_size(top_k)))
        ranked = rank(
            embedding,
            rows,
            scores,
            self.labels,
            top_k,
            norm=self.normaliser,
            vectors=self.vectors,
            by_identity=self.by_identity,
            space=space,
        )
        cands = []
        for c in ranked:
            ident = self.identities[c.identity]
            cands.append(Candidate(str(ident["id"]), str(ident.get("name", ident["id"])), c.score, c.row, c.normalised))
        match = cands[0] if cands and cands[0].decided_on(space) >= thr else None
        return Decision(match, cands, thr, space)

    def close(self) -> None:
        self.index.close()
        self._reader.close()


LOCAL_INDEX = "local-index.json"


@dataclass(frozen=True)
class _Loaded:
    normaliser: Normaliser
    by_identity: IdentityRows


def _load_normaliser(
    reader: BundleReader, manifest: Manifest, verify: bool, directory: Path, vectors: np.ndarray, labels: np.ndarray
) -> _Loaded | None:
    """The bundle's normalisation data, checked like every file; None if it has none (or a method this
    edgeface does not know: the bundle's raw threshold still holds, so it decides on raw cosine)."""
    section = manifest.normalisation
    if section is None:
        return None
    if section.get("method") != "s-norm" or any(n not in manifest.files for n in NORM_FILES):
        log.warning("gallery.normalisation.unknown", dir=str(directory), method=section.get("method"))
        return None
    paths = {n: reader.materialize(n, manifest.files[n], verify) for n in NORM_FILES}
    by_identity = IdentityRows(np.asarray(labels), manifest.identities)
    try:
        norm = assemble(
            np.load(paths[STATS]),
            np.load(paths[COHORT_LABELS]),
            np.load(paths[COHORT]),
            vectors,
            by_identity,
            int(section["top_k"]),
        )
    except (ValueError, KeyError, TypeError) as e:
        raise BundleRejected("format", f"{directory}: normalisation data is inconsistent ({e})") from None
    if norm.stats.shape[0] != manifest.identities or norm.cohort.shape[1:] != (manifest.embedder.dim,):
        raise BundleRejected(
            "format",
            f"{directory}: normalisation statistics for {norm.stats.shape[0]} identities of dim "
            f"{norm.cohort.shape[1:]}, the manifest says {manifest.identities} of {manifest.embedder.dim}",
        )
    return _Loaded(norm, by_identity)


def _local_index_entry(directory: Path) -> FileEntry | None:
    """A device-side note that index.ann was rebuilt here and differs from the server's bytes."""
    p = directory / LOCAL_INDEX
    if not p.exists():
        return None
    d = json.loads(p.read_text())
    return FileEntry(str(d["sha256"]), int(d["size"]))


__all__ = ["Gallery", "Candidate", "Decision", "BundleReader", "LOCAL_INDEX"]
