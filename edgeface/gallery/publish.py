"""Publishing (central side): add a new signed version, its deltas, and the pointer devices poll.

A publish folder, served as it is by ``edgeface gallery serve``::

    latest.json                       {"format": "edgeface-gallery-pointer", "version": 13,
                                       "bundle": "v0000000013/", "deltas": {"12": "deltas/12-13/", ...}}
    v0000000013/ ...                  full bundles (the last ``keep`` versions)
    deltas/12-13/ ...                 deltas to the latest version from the previous ``delta_depth``

``latest.json`` is only a hint where to look: a device trusts nothing in it, it verifies what it downloads
against the signed manifest and its own installed version.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..calibration import gallery_thresholds
from ..errors import GalleryError
from ..logs import get_logger
from .bundle import ENTRIES, MANIFEST, VECTORS, canonical_line, entry_key, write_bundle
from .delta import DeltaSpec, make_delta
from .manifest import EmbedderRef, Manifest
from .store import version_dir_name

if TYPE_CHECKING:
    from ..modelcard import ModelCard

log = get_logger(__name__)

POINTER = "latest.json"
POINTER_FORMAT = "edgeface-gallery-pointer"
MAX_POINTER_BYTES = 64 * 1024


@dataclass(frozen=True)
class Pointer:
    version: int
    bundle: str
    deltas: dict[int, str]

    def to_bytes(self) -> bytes:
        return (json.dumps({"format": POINTER_FORMAT, "version": self.version, "bundle": self.bundle,
                            "deltas": {str(k): v for k, v in sorted(self.deltas.items())}}, indent=2) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> "Pointer":
        if len(data) > MAX_POINTER_BYTES:
            raise GalleryError(f"{POINTER} is {len(data)} bytes; not a gallery pointer")
        try:
            d = json.loads(data)
            if d.get("format") != POINTER_FORMAT:
                raise ValueError(f"format {d.get('format')!r}")
            p = cls(int(d["version"]), str(d["bundle"]), {int(k): str(v) for k, v in d.get("deltas", {}).items()})
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise GalleryError(f"{POINTER} is not a gallery pointer: {e}") from None
        for rel in (p.bundle, *p.deltas.values()):
            if rel.startswith("/") or ".." in rel.split("/") or "://" in rel:
                raise GalleryError(f"{POINTER}: path {rel!r} must be relative to the publish folder")
        return p


@dataclass(frozen=True)
class Published:
    manifest: Manifest
    dir: Path
    deltas: dict[int, DeltaSpec]


def read_pointer(publish_dir: Path) -> Pointer | None:
    p = Path(publish_dir) / POINTER
    return Pointer.from_bytes(p.read_bytes()) if p.exists() else None


def stable_order(prev_dir: Path | None, entries: Sequence[dict[str, Any]], vectors: np.ndarray) -> np.ndarray:
    """Row order for a new version: rows unchanged since ``prev_dir`` keep its order, new rows follow.

    This is what makes a delta small: the target is the base minus removed rows plus appended rows.
    """
    n = len(entries)
    if prev_dir is None:
        return np.arange(n)
    lines = [canonical_line(e) for e in entries]
    by_key = {entry_key(e): i for i, e in enumerate(entries)}
    if len(by_key) != n:
        raise GalleryError("two entries have the same identity and image; enroll each image once per identity")
    prev_vectors = np.load(prev_dir / VECTORS, mmap_mode="r")
    order, used = [], np.zeros(n, bool)
    with open(prev_dir / ENTRIES, "rb") as f:
        for row, line in enumerate(f):
            i = by_key.get(entry_key(json.loads(line)))
            if i is not None and lines[i] == line and np.array_equal(prev_vectors[row], vectors[i]):
                order.append(i)
                used[i] = True
    order.extend(np.flatnonzero(~used).tolist())
    return np.asarray(order, np.int64)


def publish_for(publish_dir: Path, card: "ModelCard", *, vectors: np.ndarray, entries: Sequence[dict[str, Any]],
                identities: Sequence[dict[str, Any]], signer: Ed25519PrivateKey, target_fpir: float,
                **kwargs: Any) -> Published:
    """:func:`publish` for galleries embedded with ``card``: the bundle names that embedder and carries
    the decision threshold derived for its size at ``target_fpir`` (edgeface/calibration.py)."""
    spec = card.embedder
    if spec is None:
        raise GalleryError(f"model {card.id} is a {card.task}, not an embedder")
    return publish(publish_dir, vectors=vectors, entries=entries, identities=identities,
                   embedder=EmbedderRef(card.id, card.sha256, spec.dim, spec.metric),
                   thresholds=gallery_thresholds(spec, len(vectors), target_fpir), signer=signer, **kwargs)


def publish(publish_dir: Path, *, vectors: np.ndarray, entries: Sequence[dict[str, Any]],
            identities: Sequence[dict[str, Any]], embedder: EmbedderRef, thresholds: dict[str, float],
            signer: Ed25519PrivateKey, delta_depth: int = 3, keep: int = 5, trees: int | None = None) -> Published:
    """Build version latest+1 from the full gallery content, its deltas, and switch the pointer to it."""
    root = Path(publish_dir)
    root.mkdir(parents=True, exist_ok=True)
    ptr = read_pointer(root)
    prev_dir = root / ptr.bundle if ptr else None
    version = (ptr.version if ptr else 0) + 1
    order = stable_order(prev_dir, entries, vectors)
    ordered_entries = [entries[i] for i in order]
    used = {str(e["identity"]) for e in ordered_entries}
    prev_ids: list[str] = []
    if prev_dir is not None:
        with open(prev_dir / "identities.ndjson", "rb") as f:
            prev_ids = [json.loads(x)["id"] for x in f]
    by_id = {str(i["id"]): i for i in identities if str(i["id"]) in used}
    known = set(prev_ids)
    ident_order = [i for i in prev_ids if i in by_id] + [i for i in by_id if i not in known]
    bundle_dir = root / version_dir_name(version)
    manifest = write_bundle(bundle_dir, vectors=np.asarray(vectors, np.float32)[order], entries=ordered_entries,
                            identities=[by_id[i] for i in ident_order], version=version, embedder=embedder,
                            thresholds=thresholds, signer=signer, trees=trees)
    deltas: dict[int, DeltaSpec] = {}
    for old in sorted(_versions(root), reverse=True)[1 : 1 + delta_depth]:
        spec = make_delta(root / version_dir_name(old), bundle_dir, root / "deltas" / f"{old}-{version}", signer)
        if spec.total_bytes < manifest.total_bytes // 2:
            deltas[old] = spec
        else:
            shutil.rmtree(root / "deltas" / f"{old}-{version}")
    new_ptr = Pointer(version, version_dir_name(version) + "/", {v: f"deltas/{v}-{version}/" for v in deltas})
    tmp = root / (POINTER + ".tmp")
    tmp.write_bytes(new_ptr.to_bytes())
    os.replace(tmp, root / POINTER)
    _prune(root, version, keep)
    log.info("gallery.published", version=version, count=manifest.count, bytes=manifest.total_bytes,
             deltas={v: s.total_bytes for v, s in deltas.items()})
    return Published(manifest, bundle_dir, deltas)


def _versions(root: Path) -> list[int]:
    out = []
    for d in root.glob("v*"):
        if d.is_dir() and (d / MANIFEST).exists() and d.name[1:].isdigit():
            out.append(int(d.name[1:]))
    return out


def _prune(root: Path, latest: int, keep: int) -> None:
    for v in sorted(_versions(root))[:-keep] if keep > 0 else []:
        shutil.rmtree(root / version_dir_name(v), ignore_errors=True)
    for d in (root / "deltas").glob("*-*") if (root / "deltas").exists() else []:
        if not d.name.endswith(f"-{latest}"):
            shutil.rmtree(d, ignore_errors=True)
