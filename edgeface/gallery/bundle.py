"""Gallery bundles on disk: writing a signed bundle, and reading and verifying one.

A bundle is a folder::

    manifest.json     what is in it (see manifest.py), signed by
    manifest.sig      Ed25519 signature of manifest.json's exact bytes (see signing.py)
    vectors.npy       (count, dim) float32, L2-normalised, one row per enrolled image
    entries.ndjson    one JSON line per row: identity, image SHA-256 and the image's provenance
    identities.ndjson one JSON line per identity: id, name (labels.npy indexes this list)
    labels.npy        (count,) int32: the identity of each row, as a position in identities.ndjson
    projection.npy    (d + 1, dim) float32: mean and principal directions the index works in
    index.ann         Annoy index over the projected vectors (see index.py)

and, when the gallery is published with score normalisation (cohort.py; listed in the manifest's
``normalisation`` section and hashed like every other file):

    norm_stats.npy    (identities, 2) float32: mean and spread of each identity template's top-K cohort scores
    cohort_labels.npy (C,) int32: the cohort, in order: gallery identities (positions; their templates are
                      rebuilt from the vectors) and -1 for each extra person not in the gallery
    cohort.npy        (E, dim) float32: the extra people's embeddings (E = the -1 labels; often 0)

Files are written through a *sink* and read through a *source*, so the same code writes plain folders
(central side) and encrypted ones (a device's store; see crypto.py).
"""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import BundleRejected
from . import signing
from .cohort import COHORT, COHORT_LABELS, STATS, Normaliser
from .index import ANNOY_METRIC, DEFAULT_SEED, build_annoy, fit_projection, trees_for
from .manifest import EmbedderRef, FileEntry, Manifest, UnitEmbedder, sha256_file

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
VECTORS = "vectors.npy"
ENTRIES = "entries.ndjson"
IDENTITIES = "identities.ndjson"
LABELS = "labels.npy"
INDEX = "index.ann"
PROJECTION = "projection.npy"
DATA_FILES = (VECTORS, ENTRIES, IDENTITIES, LABELS, PROJECTION, INDEX)
PROVENANCE_FIELDS = ("source", "consent", "enrolled_by", "enrolled_at")


def canonical_line(record: dict[str, Any]) -> bytes:
    """One NDJSON line with a stable byte form (sorted keys, no spaces), so equal records hash equal."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def entry_key(record: dict[str, Any]) -> tuple[str, str]:
    """A row is one image of one identity."""
    return (str(record["identity"]), str(record["image"]))


# -- sinks: where bundle files are written ------------------------------------------------------------


class Sink(Protocol):
    dir: Path

    def write(self, name: str, chunks: Iterable[bytes]) -> FileEntry: ...

    def build(self, name: str, make: Callable[[Path], None]) -> FileEntry: ...


class PlainDir:
    """Writes files as they are into a folder."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)

    def write(self, name: str, chunks: Iterable[bytes]) -> FileEntry:
        import hashlib

        h, n = hashlib.sha256(), 0
        with open(self.dir / name, "wb") as f:
            for c in chunks:
                h.update(c)
                n += len(c)
                f.write(c)
            f.flush()
            os.fsync(f.fileno())
        return FileEntry(h.hexdigest(), n)

    def build(self, name: str, make: Callable[[Path], None]) -> FileEntry:
        path = self.dir / name
        make(path)
        return FileEntry(sha256_file(path), path.stat().st_size)


def npy_chunks(array: np.ndarray, rows_per_chunk: int = 16384) -> Iterator[bytes]:
    """The bytes ``np.save`` writes for ``array``, in chunks (so a memory map is never copied whole)."""
    array = np.asarray(array)
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        head, {"descr": np.lib.format.dtype_to_descr(array.dtype), "fortran_order": False, "shape": array.shape}
    )
    yield head.getvalue()
    for s in range(0, len(array), rows_per_chunk):
        yield np.ascontiguousarray(array[s : s + rows_per_chunk]).tobytes()


def labels_for(entry_records: Sequence[dict[str, Any]], identity_ids: Sequence[str]) -> np.ndarray:
    pos = {iid: i for i, iid in enumerate(identity_ids)}
    try:
        return np.fromiter((pos[str(e["identity"])] for e in entry_records), np.int32, len(entry_records))
    except KeyError as e:
        raise ValueError(f"entry refers to identity {e} that is not in the identities list") from None


def write_contents(
    sink: Sink,
    vectors: np.ndarray,
    entry_lines: Sequence[bytes],
    identity_lines: Sequence[bytes],
    trees: int,
    seed: int,
    projection: np.ndarray | None = None,
) -> dict[str, FileEntry]:
    """Write the data files of a bundle (everything but the manifest and signature).

    ``projection`` None fits it from ``vectors`` (a full build); a delta passes the server's.
    """
    if vectors.ndim != 2 or vectors.dtype != np.float32:
        raise ValueError(f"vectors must be float32 (N, D), got {vectors.dtype} {vectors.shape}")
    if len(entry_lines) != len(vectors):
        raise ValueError(f"{len(entry_lines)} entries for {len(vectors)} vectors")
    identity_ids = [json.loads(line)["id"] for line in identity_lines]
    if len(set(identity_ids)) != len(identity_ids):
        raise ValueError("identity ids must be unique")
    labels = labels_for([json.loads(line) for line in entry_lines], identity_ids)
    files = {
        VECTORS: sink.write(VECTORS, npy_chunks(vectors)),
        ENTRIES: sink.write(ENTRIES, entry_lines),
        IDENTITIES: sink.write(IDENTITIES, identity_lines),
        LABELS: sink.write(LABELS, npy_chunks(labels)),
    }
    proj = fit_projection(vectors) if projection is None else np.asarray(projection, np.float32)
    files[PROJECTION] = sink.write(PROJECTION, npy_chunks(proj))
    files[INDEX] = sink.build(INDEX, lambda p: build_annoy(vectors, p, trees, proj, seed))
    return files


NORM_FILES = (STATS, COHORT, COHORT_LABELS)


def write_normaliser(sink: Sink, norm: Normaliser) -> dict[str, FileEntry]:
    return {
        STATS: sink.write(STATS, npy_chunks(np.asarray(norm.stats, np.float32))),
        COHORT: sink.write(COHORT, npy_chunks(np.asarray(norm.cohort[norm.cohort_labels < 0], np.float32))),
        COHORT_LABELS: sink.write(COHORT_LABELS, npy_chunks(np.asarray(norm.cohort_labels, np.int32))),
    }


def write_bundle(
    out_dir: Path,
    *,
    vectors: np.ndarray,
    entries: Sequence[dict[str, Any]],
    identities: Sequence[dict[str, Any]],
    version: int,
    embedder: EmbedderRef,
    thresholds: dict[str, float],
    signer: Ed25519PrivateKey | None,
    trees: int | None = None,
    seed: int = DEFAULT_SEED,
    normaliser: Normaliser | None = None,
    normalisation: dict[str, Any] | None = None,
) -> Manifest:
    """Write a complete bundle folder, atomically (built beside it, then renamed into place).

    ``signer`` None writes an unsigned bundle (only tests want one: devices refuse it). ``normaliser``
    adds the normalisation files and the manifest's ``normalisation`` section (``normalisation``: what
    else it records, e.g. how the threshold was measured); ``thresholds`` must then have ``normalised``.
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} already exists; bundles are immutable, build a new version")
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != embedder.dim:
        raise ValueError(f"vectors are {vectors.shape}, the embedder {embedder.id} makes {embedder.dim}-d")
    trees = trees or trees_for(len(vectors))
    files = write_contents(
        PlainDir(tmp),
        vectors,
        [canonical_line(e) for e in entries],
        [canonical_line(i) for i in identities],
        trees,
        seed,
    )
    norm_section = None
    if normaliser is not None:
        files.update(write_normaliser(PlainDir(tmp), normaliser))
        norm_section = {
            "method": "s-norm",
            "templates": "mean",
            "top_k": normaliser.top_k,
            "cohort": len(normaliser.cohort),
            "files": list(NORM_FILES),
            **(normalisation or {}),
        }
    manifest = Manifest(
        gallery_version=version,
        embedder=embedder,
        thresholds=dict(thresholds),
        count=len(vectors),
        identities=len(identities),
        index={
            "kind": "annoy",
            "metric": ANNOY_METRIC,
            "space": "pca",
            "dims": int(np.load(tmp / PROJECTION).shape[0] - 1),
            "trees": trees,
            "seed": seed,
        },
        files=files,
        normalisation=norm_section,
    )
    data = manifest.to_bytes()
    (tmp / MANIFEST).write_bytes(data)
    if signer is not None:
        (tmp / SIGNATURE).write_bytes(signing.sign(data, signer))
    tmp.rename(out_dir)
    return manifest


# -- reading and verifying ----------------------------------------------------------------------------


def read_signed_manifest(
    manifest_bytes: bytes, signature: bytes | None, trusted: Sequence[Ed25519PublicKey], where: str = "bundle"
) -> Manifest:
    """Verify the signature first, then parse: nothing unsigned is even interpreted."""
    signing.verify(manifest_bytes, signature, trusted, what=f"{where}/{MANIFEST}")
    manifest = Manifest.from_bytes(manifest_bytes, f"{where}/{MANIFEST}")
    missing = [n for n in DATA_FILES if n not in manifest.files]
    if missing:
        raise BundleRejected("format", f"{where}/{MANIFEST} does not list {', '.join(missing)}")
    return manifest


def check_acceptable(
    manifest: Manifest,
    *,
    embedder_sha256: str | None = None,
    embedder: UnitEmbedder | None = None,
    newer_than: int | None = None,
    where: str = "bundle",
) -> None:
    """The device's policy: built in the embedding space this unit's embedder works in (``embedder``; or,
    given only ``embedder_sha256``, with that very model file), and strictly newer."""
    unit = embedder or (UnitEmbedder(embedder_sha256) if embedder_sha256 is not None else None)
    if unit is not None and not unit.accepts(manifest.embedder):
        theirs = f", space {manifest.embedder.space!r}" if manifest.embedder.space else ""
        raise BundleRejected(
            "embedder_mismatch",
            f"{where} was built with embedder {manifest.embedder.id} ({manifest.embedder.sha256[:12]}{theirs}), "
            f"this unit runs {unit.describe()}; its vectors are not comparable. Publish a gallery built with "
            "a model in this unit's embedding space, or update the unit's model first",
        )
    if newer_than is not None and manifest.gallery_version <= newer_than:
        raise BundleRejected(
            "rollback",
            f"{where} is gallery version {manifest.gallery_version}, not newer than the installed "
            f"{newer_than}; refusing to go back (a rollback could restore removed identities)",
        )


@dataclass(frozen=True)
class VerifiedBundle:
    dir: Path
    manifest: Manifest
    key_id: str


def verify_bundle(
    directory: Path,
    trusted: Sequence[Ed25519PublicKey],
    *,
    embedder_sha256: str | None = None,
    embedder: UnitEmbedder | None = None,
    newer_than: int | None = None,
) -> VerifiedBundle:
    """Check a plain bundle folder completely: signature, every file's size and SHA-256, and policy."""
    d = Path(directory)
    try:
        data = (d / MANIFEST).read_bytes()
    except OSError as e:
        raise BundleRejected("missing_file", f"{d}: no readable {MANIFEST} ({e})") from None
    sig_path = d / SIGNATURE
    sig = sig_path.read_bytes() if sig_path.exists() else None
    kid = signing.verify(data, sig, trusted, what=f"{d}/{MANIFEST}")
    manifest = read_signed_manifest(data, sig, trusted, str(d))
    check_acceptable(manifest, embedder_sha256=embedder_sha256, embedder=embedder, newer_than=newer_than, where=str(d))
    for name, want in manifest.files.items():
        check_file(d / name, name, want)
    return VerifiedBundle(d, manifest, kid)


def check_file(path: Path, name: str, want: FileEntry) -> None:
    try:
        size = path.stat().st_size
    except OSError:
        raise BundleRejected("missing_file", f"{path} is missing; the bundle is incomplete") from None
    if size != want.size:
        raise BundleRejected("size_mismatch", f"{path} is {size} bytes, the manifest says {want.size}")
    got = sha256_file(path)
    if got != want.sha256:
        raise BundleRejected(
            "hash_mismatch",
            f"{path} has SHA-256 {got[:16]}..., the signed manifest says "
            f"{want.sha256[:16]}...; the file was altered or corrupted",
        )
