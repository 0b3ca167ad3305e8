"""Delta bundles: move a device from gallery version A to B by sending only what changed.

Rows of version B are always the rows of A that survive, in A's order, followed by the rows added
since (``publish`` keeps that order), so a delta is: which rows of A to drop (``remove.npy``), the new
rows (``add_vectors.npy``, ``add_entries.ndjson``), identity changes (``identity_ops.ndjson``) and B's
index projection (``projection.npy``, a few KiB). The
device applies it to its verified copy of A, rebuilds labels and the Annoy index exactly as the server
does (same code, fixed seed, one build thread) and checks every resulting file against B's signed
manifest, which travels with the delta. Adding or removing 1% of a gallery sends about 1% of it.

A delta folder holds ``delta.json`` + ``delta.sig`` (signed like a manifest), the target's
``manifest.json`` + ``manifest.sig``, and the patch files listed in ``delta.json``: the five above, plus
the target's normalisation files (cohort.py), which change with every version and are carried whole
(8 bytes per identity and the cohort: a few percent of a full bundle).

The Annoy index is data derived from the verified vectors. Floating point differs between CPU
families (x86 vs ARM fused multiply-add), so an index rebuilt on the device may differ in bytes from the
server's; then the device keeps its own build after a self-check (every sampled row must find itself)
and records its hash in ``local-index.json``. Every score is computed from the verified vectors, so
the index can at worst cost recall, never change a score.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import BundleRejected
from ..logs import get_logger
from . import signing
from .bundle import (
    ENTRIES,
    IDENTITIES,
    INDEX,
    MANIFEST,
    NORM_FILES,
    PROJECTION,
    SIGNATURE,
    VECTORS,
    PlainDir,
    Sink,
    npy_chunks,
    write_contents,
)
from .crypto import RamFile
from .manifest import FileEntry, Manifest

log = get_logger(__name__)

DELTA, DELTA_SIG = "delta.json", "delta.sig"
REMOVE, ADD_VECTORS, ADD_ENTRIES, IDENTITY_OPS = (
    "remove.npy",
    "add_vectors.npy",
    "add_entries.ndjson",
    "identity_ops.ndjson",
)
PATCH_FILES = (REMOVE, ADD_VECTORS, ADD_ENTRIES, IDENTITY_OPS, PROJECTION)  # the target's projection
CARRIED = NORM_FILES  # target files sent whole when the target has them
FORMAT = "edgeface-gallery-delta"


@dataclass(frozen=True)
class DeltaSpec:
    base_version: int
    base_manifest_sha256: str
    target_version: int
    target_manifest_sha256: str
    removed: int
    added: int
    files: dict[str, FileEntry]

    def to_bytes(self) -> bytes:
        d = {
            "format": FORMAT,
            "format_version": 1,
            "base_version": self.base_version,
            "base_manifest_sha256": self.base_manifest_sha256,
            "target_version": self.target_version,
            "target_manifest_sha256": self.target_manifest_sha256,
            "removed": self.removed,
            "added": self.added,
            "files": {n: {"sha256": f.sha256, "size": f.size} for n, f in sorted(self.files.items())},
        }
        return (json.dumps(d, indent=2, sort_keys=True) + "\n").encode()

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files.values())

    @classmethod
    def from_signed(
        cls, data: bytes, sig: bytes | None, trusted: Sequence[Ed25519PublicKey], where: str = "delta"
    ) -> DeltaSpec:
        signing.verify(data, sig, trusted, what=f"{where}/{DELTA}")
        try:
            d = json.loads(data)
            if d.get("format") != FORMAT or d.get("format_version") != 1:
                raise ValueError("not a format-1 delta")
            files = {str(n): FileEntry(str(f["sha256"]), int(f["size"])) for n, f in d["files"].items()}
            if not set(PATCH_FILES) <= set(files) or not set(files) <= set(PATCH_FILES) | set(CARRIED):
                raise ValueError(f"files {sorted(files)}")
            return cls(
                int(d["base_version"]),
                str(d["base_manifest_sha256"]),
                int(d["target_version"]),
                str(d["target_manifest_sha256"]),
                int(d["removed"]),
                int(d["added"]),
                files,
            )
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise BundleRejected("format", f"{where}/{DELTA} is not a valid delta: {e}") from None


def _lines(path: Path) -> list[bytes]:
    with open(path, "rb") as f:
        return f.readlines()


def _identity_ops(base: list[bytes], target: list[bytes]) -> list[bytes]:
    bid = [json.loads(x)["id"] for x in base]
    tid = [json.loads(x)["id"] for x in target]
    tset, bset = set(tid), set(bid)
    ops = [json.dumps({"op": "remove", "id": i}).encode() + b"\n" for i in bid if i not in tset]
    tline = dict(zip(tid, target, strict=True))
    ops += [
        json.dumps({"op": "put", "line": tline[i].decode()}).encode() + b"\n"
        for i, line in zip(bid, base, strict=True)
        if i in tset and tline[i] != line
    ]
    ops += [json.dumps({"op": "put", "line": tline[i].decode()}).encode() + b"\n" for i in tid if i not in bset]
    if apply_identity_ops(base, ops) != target:  # the target reordered identities: send them all
        ops = [json.dumps({"op": "remove", "id": i}).encode() + b"\n" for i in bid]
        ops += [json.dumps({"op": "put", "line": x.decode()}).encode() + b"\n" for x in target]
    return ops


def apply_identity_ops(base: list[bytes], ops: Sequence[bytes]) -> list[bytes]:
    """Removed ids leave, puts of known ids replace in place, puts of new ids append in order."""
    out = {json.loads(x)["id"]: x for x in base}  # dicts keep insertion order
    for raw in ops:
        op = json.loads(raw)
        if op["op"] == "remove":
            out.pop(op["id"], None)
        elif op["op"] == "put":
            line = op["line"].encode()
            out[json.loads(line)["id"]] = line
        else:
            raise BundleRejected("format", f"unknown identity op {op['op']!r}")
    return list(out.values())


def make_delta(base_dir: Path, target_dir: Path, out_dir: Path, signer: Ed25519PrivateKey) -> DeltaSpec:
    """Write the delta from bundle ``base_dir`` to bundle ``target_dir`` (both plain, verified folders)."""
    bv = np.load(base_dir / VECTORS, mmap_mode="r")
    tv = np.load(target_dir / VECTORS, mmap_mode="r")
    bl, tl = _lines(base_dir / ENTRIES), _lines(target_dir / ENTRIES)
    remove, j = [], 0
    for i, line in enumerate(bl):  # greedy: target = surviving base rows in order, then additions
        if j < len(tl) and tl[j] == line and np.array_equal(bv[i], tv[j]):
            j += 1
        else:
            remove.append(i)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    sink = PlainDir(tmp)
    files = {
        REMOVE: sink.write(REMOVE, npy_chunks(np.asarray(remove, np.int64))),
        ADD_VECTORS: sink.write(ADD_VECTORS, npy_chunks(np.asarray(tv[j:], np.float32))),
        ADD_ENTRIES: sink.write(ADD_ENTRIES, tl[j:]),
        IDENTITY_OPS: sink.write(
            IDENTITY_OPS, _identity_ops(_lines(base_dir / IDENTITIES), _lines(target_dir / IDENTITIES))
        ),
        PROJECTION: sink.write(PROJECTION, [(target_dir / PROJECTION).read_bytes()]),
    }
    for name in CARRIED:
        if (target_dir / name).exists():
            files[name] = sink.write(name, [(target_dir / name).read_bytes()])
    for name in (MANIFEST, SIGNATURE):
        shutil.copyfile(target_dir / name, tmp / name)
    spec = DeltaSpec(
        base_version=Manifest.from_bytes((base_dir / MANIFEST).read_bytes()).gallery_version,
        base_manifest_sha256=hashlib.sha256((base_dir / MANIFEST).read_bytes()).hexdigest(),
        target_version=Manifest.from_bytes((target_dir / MANIFEST).read_bytes()).gallery_version,
        target_manifest_sha256=hashlib.sha256((target_dir / MANIFEST).read_bytes()).hexdigest(),
        removed=len(remove),
        added=len(tl) - j,
        files=files,
    )
    data = spec.to_bytes()
    (tmp / DELTA).write_bytes(data)
    (tmp / DELTA_SIG).write_bytes(signing.sign(data, signer))
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return spec


def apply_delta(
    base_vectors: np.ndarray,
    base_entries: Sequence[bytes],
    base_identities: Sequence[bytes],
    patch: dict[str, Path],
    target: Manifest,
    sink: Sink,
) -> tuple[dict[str, FileEntry], bool]:
    """Build version B's files into ``sink`` from A's plaintext and the patch files (plaintext paths).

    Returns the written files and whether the rebuilt index differs in bytes from the server's (see the
    module docstring). Raises :class:`BundleRejected` if any data file differs from the target manifest.
    """
    remove = np.load(patch[REMOVE])
    add_vectors = np.load(patch[ADD_VECTORS], mmap_mode="r")
    if remove.ndim != 1 or (len(remove) and (remove.min() < 0 or remove.max() >= len(base_vectors))):
        raise BundleRejected("format", "delta remove.npy has rows outside the installed gallery")
    keep = np.ones(len(base_vectors), bool)
    keep[remove] = False
    count = int(keep.sum()) + len(add_vectors)
    if count != target.count or add_vectors.shape[1:] != (target.embedder.dim,):
        raise BundleRejected(
            "format",
            f"delta gives {count} rows of {add_vectors.shape[1:]}, the target "
            f"manifest says {target.count} of {target.embedder.dim}",
        )

    ram = RamFile("delta-vectors")
    try:
        with open(ram.path, "wb") as f:
            f.write(next(npy_chunks(np.empty((count, target.embedder.dim), np.float32))))  # the header
            for s in range(0, len(base_vectors), 65536):
                blk = np.asarray(base_vectors[s : s + 65536])
                f.write(np.ascontiguousarray(blk[keep[s : s + 65536]], np.float32).tobytes())
            f.write(np.ascontiguousarray(add_vectors, np.float32).tobytes())
        vectors = np.load(ram.path, mmap_mode="r")
        entries = [line for line, k in zip(base_entries, keep, strict=True) if k] + _lines(patch[ADD_ENTRIES])
        identities = apply_identity_ops(list(base_identities), _lines(patch[IDENTITY_OPS]))
        files = write_contents(
            sink,
            vectors,
            entries,
            identities,
            int(target.index["trees"]),
            int(target.index["seed"]),
            projection=np.load(patch[PROJECTION]),
        )
        for name in CARRIED:
            if name in patch:
                files[name] = sink.write(name, [patch[name].read_bytes()])
        missing = set(target.files) - set(files)
        if missing:
            raise BundleRejected("format", f"the delta does not give the target's {', '.join(sorted(missing))}")
        for name, got in files.items():
            if name != INDEX and got != target.files[name]:
                raise BundleRejected(
                    "hash_mismatch",
                    f"delta result {name} does not match the signed target "
                    "manifest; the delta does not apply to the installed gallery",
                )
        index_differs = files[INDEX] != target.files[INDEX]
        if index_differs:
            log.warning(
                "gallery.delta.index_rebuilt_differs",
                version=target.gallery_version,
                note="this CPU's floating point differs from the server's; checking the local build",
            )
        return files, index_differs
    finally:
        ram.close()


def summarise(spec: DeltaSpec, full: Manifest) -> dict[str, Any]:
    return {
        "base_version": spec.base_version,
        "target_version": spec.target_version,
        "removed": spec.removed,
        "added": spec.added,
        "delta_bytes": spec.total_bytes,
        "full_bytes": full.total_bytes,
        "fraction": round(spec.total_bytes / max(1, full.total_bytes), 5),
    }
