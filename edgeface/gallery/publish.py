"""Publishing (central side): add a new signed version, its deltas, and the pointer devices poll.

A publish folder, served as it is by ``edgeface gallery serve``::

    latest.json                       {"format": "edgeface-gallery-pointer", "version": 13,
                                       "bundle": "v0000000013/", "deltas": {"12": "deltas/12-13/", ...},
                                       "signed_at": "...Z", "expires_at": "...Z", "signature": {...}}
    v0000000013/ ...                  full bundles (the last ``keep`` versions)
    deltas/12-13/ ...                 deltas to the latest version from the previous ``delta_depth``

``latest.json`` is signed by the same key as the manifests, over every field but ``signature`` (as
canonical JSON: sorted keys, no spaces, ASCII), so one file is replaced atomically and units of older
releases, which ignore unknown fields, still read it. What the signature adds is **freshness**:
``expires_at`` (``gallery.pointer_ttl_s`` after signing) bounds how long a mirror can keep serving an old
pointer; past it units refuse the pointer and show their gallery as stale. The publisher re-signs it
without a new version with :func:`refresh_pointer` (``edgeface gallery refresh``, e.g. daily from cron;
the central server does it when a unit fetches a pointer past half its lifetime). Everything else a
unit downloads is still verified against the signed manifest and its own installed version.
"""

from __future__ import annotations

import calendar
import fcntl
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import BundleRejected, GalleryError
from ..logs import get_logger
from ..vision.calibration import gallery_thresholds
from . import cohort, signing
from .bundle import ENTRIES, MANIFEST, VECTORS, canonical_line, entry_key, labels_for, write_bundle
from .delta import DeltaSpec, make_delta
from .manifest import EmbedderRef, Manifest
from .store import version_dir_name

if TYPE_CHECKING:
    from ..vision.cards import ModelCard

log = get_logger(__name__)

POINTER = "latest.json"
POINTER_FORMAT = "edgeface-gallery-pointer"
MAX_POINTER_BYTES = 64 * 1024
DEFAULT_POINTER_TTL_S = 3 * 86400  # gallery.pointer_ttl_s
LOCK_FILE = ".publish.lock"  # a dotfile: never served; the central server's publication lock is the same file
_UTC = "%Y-%m-%dT%H:%M:%SZ"


def format_utc(ts: float) -> str:
    return time.strftime(_UTC, time.gmtime(ts))


def parse_utc(text: str) -> float:
    """Seconds since the epoch of ``YYYY-MM-DDTHH:MM:SSZ`` (ValueError for anything else)."""
    return float(calendar.timegm(time.strptime(text, _UTC)))


def canonical(doc: dict[str, Any]) -> bytes:
    """The bytes a pointer signature covers: ``doc`` as sorted, compact, ASCII JSON."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


@dataclass(frozen=True)
class Pointer:
    version: int
    bundle: str
    deltas: dict[int, str]
    signed_at: str | None = None  # None: an unsigned pointer (written before pointers were signed)
    expires_at: str | None = None

    def body(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "format": POINTER_FORMAT,
            "version": self.version,
            "bundle": self.bundle,
            "deltas": {str(k): v for k, v in sorted(self.deltas.items())},
        }
        if self.signed_at is not None:
            doc["signed_at"] = self.signed_at
        if self.expires_at is not None:
            doc["expires_at"] = self.expires_at
        return doc

    def to_bytes(self) -> bytes:
        """The unsigned document (for tests and tools; :meth:`signed` is what is published)."""
        return (json.dumps(self.body(), indent=2) + "\n").encode()

    def signed(self, signer: Ed25519PrivateKey, ttl_s: float, now: float | None = None) -> tuple[Pointer, bytes]:
        """This pointer signed now, valid ``ttl_s`` seconds: (the pointer with its times, the file's bytes)."""
        if ttl_s <= 0:
            raise GalleryError(f"gallery.pointer_ttl_s must be positive, not {ttl_s}")
        now = time.time() if now is None else now
        ptr = replace(self, signed_at=format_utc(now), expires_at=format_utc(now + ttl_s))
        body = ptr.body()
        sig = json.loads(signing.sign(canonical(body), signer))
        return ptr, (json.dumps({**body, "signature": sig}, indent=2) + "\n").encode()

    @property
    def expires_ts(self) -> float | None:
        return parse_utc(self.expires_at) if self.expires_at is not None else None

    @classmethod
    def from_doc(cls, d: Any) -> Pointer:
        try:
            if d.get("format") != POINTER_FORMAT:
                raise ValueError(f"format {d.get('format')!r}")
            p = cls(
                int(d["version"]),
                str(d["bundle"]),
                {int(k): str(v) for k, v in d.get("deltas", {}).items()},
                None if d.get("signed_at") is None else str(d["signed_at"]),
                None if d.get("expires_at") is None else str(d["expires_at"]),
            )
            for t in (p.signed_at, p.expires_at):
                if t is not None:
                    parse_utc(t)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise GalleryError(f"{POINTER} is not a gallery pointer: {e}") from None
        for rel in (p.bundle, *p.deltas.values()):
            if rel.startswith("/") or ".." in rel.split("/") or "://" in rel:
                raise GalleryError(f"{POINTER}: path {rel!r} must be relative to the publish folder")
        return p

    @classmethod
    def from_bytes(cls, data: bytes) -> Pointer:
        """Parse without checking the signature (the publisher's own folder; units use :func:`verify_pointer`)."""
        return cls.from_doc(_load_pointer_doc(data))


def _load_pointer_doc(data: bytes) -> Any:
    if len(data) > MAX_POINTER_BYTES:
        raise GalleryError(f"{POINTER} is {len(data)} bytes; not a gallery pointer")
    try:
        return json.loads(data)
    except ValueError as e:
        raise GalleryError(f"{POINTER} is not a gallery pointer: {e}") from None


def verify_pointer(data: bytes, trusted: Sequence[Ed25519PublicKey], where: str, now: float | None = None) -> Pointer:
    """The pointer in ``data`` if a trusted key signed it and it has not expired; else :class:`BundleRejected`.

    Fail closed: a pointer without a signature or without ``expires_at`` (as publishers before signed
    pointers wrote them) is refused, since accepting it would let anyone who can serve an old file keep
    a unit on an old gallery forever: the very attack the expiry exists to stop. The fix is on the
    publisher, not the unit: ``edgeface gallery refresh`` signs the existing pointer in place. (The
    sample gallery that ships with edgeface is a bundle, not a publish folder: it has no pointer.)
    """
    doc = _load_pointer_doc(data)
    if not isinstance(doc, dict):
        raise GalleryError(f"{where}: {POINTER} is not a gallery pointer (not a JSON object)")
    sig = doc.pop("signature", None)
    if sig is None:
        raise BundleRejected(
            "unsigned",
            f"{where} is not signed (written by a publisher older than signed "
            "pointers): on the publisher run `edgeface gallery refresh --publish DIR "
            "--signing-key KEY` (or publish a new version) and sync again",
        )
    signing.verify(canonical(doc), json.dumps(sig).encode(), trusted, what=where)
    ptr = Pointer.from_doc(doc)
    if ptr.expires_at is None:
        raise BundleRejected(
            "format", f"{where} is signed but has no expires_at; re-sign it with `edgeface gallery refresh`"
        )
    now = time.time() if now is None else now
    expires = ptr.expires_ts
    assert expires is not None
    if now >= expires:
        raise BundleRejected(
            "expired",
            f"{where} (gallery version {ptr.version}) expired at {ptr.expires_at} (signed {ptr.signed_at}); the "
            "server, or a mirror between it and this unit, is serving an old pointer. The installed gallery "
            "stays in use but is stale: have the publisher re-sign it (`edgeface gallery refresh`, or the "
            "central server's next publication) and check that mirrors copy it",
        )
    return ptr


@contextmanager
def publish_lock(publish_dir: Path, *, wait: bool = True) -> Iterator[bool]:
    """Hold the publish folder's lock (one writer of ``latest.json`` at a time); yields False if ``wait`` is
    off and someone else holds it. The central server's publication takes the same lock (same file)."""
    root = Path(publish_dir)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK_FILE, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def write_pointer(
    publish_dir: Path, ptr: Pointer, signer: Ed25519PrivateKey, ttl_s: float, now: float | None = None
) -> Pointer:
    """Sign ``ptr`` for ``ttl_s`` seconds and switch ``latest.json`` to it atomically; returns it with its times."""
    root = Path(publish_dir)
    signed, data = ptr.signed(signer, ttl_s, now)
    tmp = root / (POINTER + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, root / POINTER)
    return signed


def refresh_pointer(publish_dir: Path, signer: Ed25519PrivateKey, ttl_s: float, now: float | None = None) -> Pointer:
    """Re-sign the current ``latest.json`` (same version, bundle and deltas) with a new expiry.

    The caller holds :func:`publish_lock` (so a publication cannot be overwritten by the old pointer).
    """
    root = Path(publish_dir)
    ptr = read_pointer(root)
    if ptr is None:
        raise GalleryError(
            f"nothing published in {root} (no {POINTER}); build a version first: "
            "`edgeface gallery build --publish DIR --signing-key KEY`"
        )
    if not (root / ptr.bundle / MANIFEST).is_file():
        raise GalleryError(
            f"{root / POINTER} points to {ptr.bundle}, which has no {MANIFEST}; refusing to re-sign "
            "a pointer to a missing bundle (publish a new version)"
        )
    signed = write_pointer(root, ptr, signer, ttl_s, now)
    log.info("gallery.pointer.refreshed", version=signed.version, expires_at=signed.expires_at)
    return signed


def refresh_pointer_if_due(
    publish_dir: Path, ttl_s: float, load_signer: Callable[[], Ed25519PrivateKey], now: float | None = None
) -> Pointer | None:
    """Re-sign ``latest.json`` if less than half its lifetime is left (or it is unsigned); the new pointer,
    or None when nothing was due, nothing is published, or a publication holds the lock right now (it
    writes a fresh pointer itself). For a server without a publish loop: a unit's poll is its clock."""
    root = Path(publish_dir)
    now = time.time() if now is None else now
    if not _refresh_due(root, ttl_s, now):
        return None
    with publish_lock(root, wait=False) as locked:
        if not locked or not _refresh_due(root, ttl_s, now):
            return None
        return refresh_pointer(root, load_signer(), ttl_s, now)


def _refresh_due(root: Path, ttl_s: float, now: float) -> bool:
    ptr = read_pointer(root)
    if ptr is None:
        return False
    expires = ptr.expires_ts
    return expires is None or expires - now < ttl_s / 2


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


def publish_for(
    publish_dir: Path,
    card: ModelCard,
    *,
    vectors: np.ndarray,
    entries: Sequence[dict[str, Any]],
    identities: Sequence[dict[str, Any]],
    signer: Ed25519PrivateKey,
    target_fpir: float,
    **kwargs: Any,
) -> Published:
    """:func:`publish` for galleries embedded with ``card``: the bundle names that embedder and carries
    the decision thresholds derived for its size at ``target_fpir``: raw cosine from the card's impostor
    tail (edgeface/vision/calibration.py), normalised from the gallery's own (cohort.py)."""
    spec = card.embedder
    if spec is None:
        raise GalleryError(f"model {card.id} is a {card.task}, not an embedder")
    return publish(
        publish_dir,
        vectors=vectors,
        entries=entries,
        identities=identities,
        embedder=EmbedderRef(card.id, card.sha256, spec.dim, spec.metric, spec.space),
        thresholds=gallery_thresholds(spec, len(vectors), target_fpir),
        signer=signer,
        target_fpir=target_fpir,
        **kwargs,
    )


def publish(
    publish_dir: Path,
    *,
    vectors: np.ndarray,
    entries: Sequence[dict[str, Any]],
    identities: Sequence[dict[str, Any]],
    embedder: EmbedderRef,
    thresholds: dict[str, float],
    signer: Ed25519PrivateKey,
    delta_depth: int = 3,
    keep: int = 5,
    trees: int | None = None,
    pointer_ttl_s: float = DEFAULT_POINTER_TTL_S,
    version: int | None = None,
    normalise: bool = True,
    target_fpir: float = 0.01,
    extra_cohort: np.ndarray | None = None,
) -> Published:
    """Build version latest+1 (or ``version``, if newer: a server publishing for several embedders keeps
    their versions in step) from the full gallery content, its deltas, and switch the pointer to it
    (signed, valid ``pointer_ttl_s`` seconds). One publisher at a time: callers hold :func:`publish_lock`.

    ``normalise``: also carry S-norm statistics and a normalised threshold for ``target_fpir``
    (cohort.py); ``extra_cohort``: embeddings of people not in the gallery, one per person, to add to
    the cohort (a gallery of fewer than cohort.MIN_COHORT identities is normalised only with them)."""
    root = Path(publish_dir)
    root.mkdir(parents=True, exist_ok=True)
    ptr = read_pointer(root)
    prev_dir = root / ptr.bundle if ptr else None
    latest = ptr.version if ptr else 0
    if version is not None and version <= latest:
        raise GalleryError(f"{root}: version {version} is not newer than the published version {latest}")
    version = latest + 1 if version is None else version
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
    ordered_vectors = np.asarray(vectors, np.float32)[order]
    norm, thresholds, norm_info = (
        _normalisation(ordered_vectors, ordered_entries, ident_order, thresholds, target_fpir, extra_cohort)
        if normalise
        else (None, thresholds, None)
    )
    manifest = write_bundle(
        bundle_dir,
        vectors=ordered_vectors,
        entries=ordered_entries,
        identities=[by_id[i] for i in ident_order],
        version=version,
        embedder=embedder,
        thresholds=thresholds,
        signer=signer,
        trees=trees,
        normaliser=norm,
        normalisation=norm_info,
    )
    deltas: dict[int, DeltaSpec] = {}
    for old in sorted(_versions(root), reverse=True)[1 : 1 + delta_depth]:
        spec = make_delta(root / version_dir_name(old), bundle_dir, root / "deltas" / f"{old}-{version}", signer)
        if spec.total_bytes < manifest.total_bytes // 2:
            deltas[old] = spec
        else:
            shutil.rmtree(root / "deltas" / f"{old}-{version}")
    new_ptr = Pointer(version, version_dir_name(version) + "/", {v: f"deltas/{v}-{version}/" for v in deltas})
    new_ptr = write_pointer(root, new_ptr, signer, pointer_ttl_s)
    _prune(root, version, keep)
    log.info(
        "gallery.published",
        version=version,
        count=manifest.count,
        bytes=manifest.total_bytes,
        deltas={v: s.total_bytes for v, s in deltas.items()},
        pointer_expires_at=new_ptr.expires_at,
    )
    return Published(manifest, bundle_dir, deltas)


def _normalisation(
    vectors: np.ndarray,
    entries: Sequence[dict[str, Any]],
    identity_ids: Sequence[str],
    thresholds: dict[str, float],
    target_fpir: float,
    extra: np.ndarray | None,
) -> tuple[cohort.Normaliser | None, dict[str, float], dict[str, Any] | None]:
    """The normaliser, the thresholds with ``normalised`` added, and what the manifest records of them;
    (None, thresholds, None) when the cohort is too small (the bundle then decides on raw cosine)."""
    labels = labels_for(entries, identity_ids)
    norm = cohort.fit(vectors, labels, identity_ids, extra=extra)
    if norm is None:
        log.warning(
            "gallery.normalisation.skipped",
            identities=len(identity_ids),
            extra_cohort=0 if extra is None else len(extra),
            needed=cohort.MIN_COHORT,
            note="decisions on raw cosine; add people not in the gallery as extra cohort to normalise",
        )
        return None, thresholds, None
    t, measured = cohort.derive_threshold(norm, vectors, labels, len(identity_ids), target_fpir)
    info = {
        "cohort_source": "gallery" if extra is None or not len(extra) else "gallery+extra",
        "target_fpir": target_fpir,
        **measured,
    }
    return norm, {**thresholds, "normalised": t}, info


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
