"""Device side of gallery sync: pull new versions over HTTP(S), verify everything, switch atomically.

One sync (:func:`sync_once`):

0. Where: a server publishing for several embedders keeps each one's galleries in
   ``<sync_url>/<embedder-id>/`` (see edgeface/server/publishing.py); a unit asks the folder of the model
   it runs (``embedder_id``) and, when there is none (HTTP 404), ``<sync_url>`` itself: a plain
   single-embedder publish folder (``edgeface gallery build``), whose bundle must still name its model.
1. ``GET latest.json`` with ``If-None-Match``: a 304 ends it (nothing published since the last look).
2. If the pointer's version is not newer than the installed one: done (older: refused, no rollback).
3. If the pointer offers a delta from the installed version: fetch ``delta.json``/``manifest.json`` and
   their signatures, verify them, download the patch files, rebuild version B from the installed A and
   check every file against B's signed manifest (see delta.py). Any failure falls back to step 4.
4. Otherwise fetch the signed manifest, verify it (signature, embedder = this unit's model, newer)
   before downloading anything big, then each file into ``staging/`` with ``Range`` resume
   (``If-Range`` with the file's ETag, so a changed file restarts instead of splicing).
5. :meth:`GalleryStore.install` re-verifies and swaps (atomic rename of the ``current`` symlink).

The installed gallery is never touched before step 5, so a refused, interrupted or crashed sync leaves
the unit matching against the gallery it had. :class:`Syncer` runs this on a schedule and when
:meth:`Syncer.trigger` is called with the retained MQTT gallery announcement (the MQTT client calls it;
the announcement is only a hint, nothing in it is trusted: not even its ``url``, the unit only ever asks
``gallery.sync_url``).

**Credentials** (the unit's bundle-download token) never leave the origin of ``gallery.sync_url``: the
HTTP client in :mod:`.transport` refuses a redirect to another scheme, host or port, and never sends
them over plain ``http://`` unless ``gallery.allow_insecure_http`` says so (a lab network).

**Freshness.** ``latest.json`` is signed and carries ``expires_at`` (see publish.py): an expired pointer
is refused like a bad signature, so a mirror that keeps serving an old, validly signed pointer cannot
freeze a unit on an old gallery unnoticed. The expiry of the last verified pointer that named the
installed version is kept in ``sync-state.json`` (``fresh_until``); past it the gallery is *stale*
(``edgeface status``), and it keeps answering.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BundleRejected, GalleryError, SyncError
from ..logs import get_logger
from .bundle import INDEX, MANIFEST, PROJECTION, SIGNATURE, VECTORS, check_acceptable, read_signed_manifest
from .crypto import DecryptError
from .delta import DELTA, DELTA_SIG, DeltaSpec, apply_delta
from .index import self_check
from .manifest import Manifest
from .publish import MAX_POINTER_BYTES, POINTER, format_utc, verify_pointer
from .store import GalleryStore, checkpoint, write_local_index_note
from .transport import Http, NotFound, TransportRefused

log = get_logger(__name__)

STATE = "sync-state.json"


@dataclass
class SyncResult:
    status: str  # "updated", "up_to_date", "not_modified", "refused", "failed"
    installed: int  # the version installed after this sync (0: none)
    previous: int
    offered: int | None = None
    via: str | None = None  # "delta" or "full"
    downloaded_bytes: int = 0
    reason: str | None = None  # BundleRejected.reason, or "network"
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _load_state(store: GalleryStore) -> dict[str, Any]:
    p = store.root / STATE
    try:
        return json.loads(p.read_text()) if p.exists() else {}
    except ValueError:
        return {}


def _save_state(store: GalleryStore, state: dict[str, Any]) -> None:
    p = store.root / STATE
    tmp = p.with_name(STATE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(p)


def _fetch_signed(http: Http, rel: str, staging: Path, names: tuple[str, str]) -> tuple[bytes, bytes | None]:
    data_name, sig_name = names
    _, data, _ = http.get_small(rel + data_name, 1 << 20)
    try:
        _, sig, _ = http.get_small(rel + sig_name, 4096)
    except SyncError as e:
        if "HTTP 404" not in str(e):
            raise
        sig = None
    return data, sig


def _check_size(m: Manifest, limit: int) -> None:
    if m.total_bytes > limit:
        raise BundleRejected(
            "too_large",
            f"gallery version {m.gallery_version} is {m.total_bytes} bytes, more than gallery.sync_max_bytes = {limit}",
        )


def _prepare_staging(
    store: GalleryStore, manifest_bytes: bytes, sig: bytes | None, version: int, suffix: str = ""
) -> Path:
    staging = (
        store.staging(version) if not suffix else store.staging(version).with_name(store.staging(version).name + suffix)
    )
    staging.mkdir(parents=True, exist_ok=True)
    old = staging / MANIFEST
    if old.exists() and old.read_bytes() != manifest_bytes:  # a different build of this version: start over
        shutil.rmtree(staging)
        staging.mkdir(parents=True)
    (staging / MANIFEST).write_bytes(manifest_bytes)
    if sig is not None:
        (staging / SIGNATURE).write_bytes(sig)
    return staging


def _sync_full(store: GalleryStore, http: Http, rel: str, current: int, max_bytes: int) -> Manifest:
    data, sig = _fetch_signed(http, rel, store.root, (MANIFEST, SIGNATURE))
    manifest = read_signed_manifest(data, sig, store.trusted, http.base + rel)
    check_acceptable(manifest, embedder=store.embedder, newer_than=current, where=http.base + rel)
    _check_size(manifest, max_bytes)
    staging = _prepare_staging(store, data, sig, manifest.gallery_version)
    (staging / "local-index.json").unlink(missing_ok=True)

    for name, want in sorted(manifest.files.items()):
        if not (staging / name).exists():
            http.download(rel + name, staging / name, name, want, store)
    checkpoint("downloaded")
    return store.install(staging)


def _sync_delta(store: GalleryStore, http: Http, rel: str, current: int, max_bytes: int) -> Manifest:
    delta_bytes, delta_sig = _fetch_signed(http, rel, store.root, (DELTA, DELTA_SIG))
    spec = DeltaSpec.from_signed(delta_bytes, delta_sig, store.trusted, http.base + rel)
    data, sig = _fetch_signed(http, rel, store.root, (MANIFEST, SIGNATURE))
    target = read_signed_manifest(data, sig, store.trusted, http.base + rel)
    check_acceptable(target, embedder=store.embedder, newer_than=current, where=http.base + rel)
    _check_size(target, max_bytes)
    if (
        spec.base_version != current
        or spec.base_manifest_sha256 != store.installed_manifest_sha256()
        or spec.target_manifest_sha256 != hashlib.sha256(data).hexdigest()
    ):
        raise BundleRejected(
            "format", f"delta {rel} is not from the installed version {current} to the manifest it carries"
        )
    staging = _prepare_staging(store, data, sig, target.gallery_version, suffix="-delta")
    try:
        return _apply_delta_in(store, http, rel, spec, target, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # small: a retry downloads it again
        raise


def _apply_delta_in(
    store: GalleryStore, http: Http, rel: str, spec: DeltaSpec, target: Manifest, staging: Path
) -> Manifest:
    patch_dir = staging / "delta"
    patch_dir.mkdir(exist_ok=True)
    for name in spec.files:  # the patch files, and any the delta carries whole (delta.CARRIED)
        if not (patch_dir / name).exists():
            http.download(rel + name, patch_dir / name, name, spec.files[name], store)
    checkpoint("downloaded")
    base = store.open(exact_max=2**62)  # verified plaintext of the installed version (no index)
    if base is None:
        raise GalleryError("no installed gallery to apply a delta to")
    patch_reader = store.reader(patch_dir)
    try:
        patch = {n: patch_reader.materialize(n, spec.files[n]) for n in spec.files}
        base_entries = [base.entries.raw(i) for i in range(len(base.entries))]
        base_identities = [base.identities.raw(i) for i in range(len(base.identities))]
        for name in target.files:
            (staging / name).unlink(missing_ok=True)
        files, index_differs = apply_delta(
            base.vectors, base_entries, base_identities, patch, target, store.sink(staging)
        )
        if index_differs:
            reader = store.reader(staging)
            try:
                vec = reader.materialize(VECTORS, target.files[VECTORS])
                proj = reader.materialize(PROJECTION, target.files[PROJECTION])
                self_check(np.load(vec, mmap_mode="r"), reader.materialize(INDEX, None, verify=False), np.load(proj))
            finally:
                reader.close()
            write_local_index_note(staging, files[INDEX])
    finally:
        patch_reader.close()
        base.close()
    shutil.rmtree(patch_dir)
    return store.install(staging)


def sync_once(
    store: GalleryStore,
    base_url: str,
    *,
    timeout: float = 30.0,
    ca_file: Path | None = None,
    max_bytes: int = 8 * 1024**3,
    use_deltas: bool = True,
    headers: dict[str, str] | None = None,
    allow_insecure_http: bool = False,
    now: float | None = None,
    embedder_id: str | None = None,
) -> SyncResult:
    """Check the server once and install a newer gallery if there is one (see the module docstring).

    ``headers`` go with every request to ``base_url``'s origin (:func:`auth_headers` for the central
    server's device login); with credentials, a plain ``http://`` URL is refused unless
    ``allow_insecure_http``. ``now`` (seconds since the epoch) is the clock pointer expiry is judged by.
    ``embedder_id`` (the model this store's galleries are for) looks in ``<base_url>/<embedder_id>/`` first,
    then in the folders of the other models of its embedding space (a compiled variant: its reference's).
    """
    store.recover()
    current = store.installed_version()
    state = _load_state(store)
    result = SyncResult("failed", current, current)
    https: list[Http] = []
    try:
        also = store.embedder.models if store.embedder else ()
        for base in _locations(base_url, embedder_id, also):
            https.append(Http(base, timeout, ca_file, headers, allow_insecure_http=allow_insecure_http))
            try:
                result = _check_and_install(
                    store, https[-1], state, current, max_bytes, use_deltas, time.time() if now is None else now
                )
                break
            except NotFound as e:
                if e.rel != POINTER or base == base_url:
                    raise
                log.info("gallery.sync.no_embedder_folder", embedder=embedder_id, url=base, fallback=base_url)
            except BundleRejected as e:
                if e.reason != "embedder_mismatch" or base != base_url or not embedder_id:
                    raise
                raise BundleRejected(
                    "embedder_mismatch",
                    f"no gallery is published for embedder {embedder_id} (nothing at "
                    f"{base_url.rstrip('/')}/{embedder_id}/{POINTER}), and the one at {base_url} is for another "
                    f"model ({e}). Add {embedder_id} to the server's server.embedders and publish",
                ) from None
    except (BundleRejected, TransportRefused) as e:
        result.status, result.reason, result.message = "refused", e.reason, str(e)
        log.error("gallery.sync.refused", reason=e.reason, error=str(e), installed=current)
    except (SyncError, DecryptError, GalleryError, OSError) as e:
        result.status, result.reason, result.message = (
            "failed",
            "network" if isinstance(e, SyncError) else "error",
            str(e),
        )
        log.warning("gallery.sync.failed", error=str(e), installed=current)
    result.downloaded_bytes = sum(h.downloaded for h in https)
    state.update(last_check=time.time(), last_result=result.to_dict())
    if result.status in ("updated", "up_to_date", "not_modified"):
        state["last_success"] = time.time()
    _save_state(store, state)
    if result.status == "updated":
        log.info(
            "gallery.sync.updated",
            version=result.installed,
            previous=current,
            via=result.via,
            bytes=result.downloaded_bytes,
        )
    return result


def _locations(base_url: str, embedder_id: str | None, also: Sequence[str] = ()) -> list[str]:
    """Where to look, in order: the embedder's own folder, those of ``also`` (models of its embedding
    space), then ``base_url`` itself."""
    base = base_url.rstrip("/") + "/"
    if not embedder_id:
        return [base_url]
    ids = dict.fromkeys([embedder_id, *also])
    return [base + urllib.parse.quote(i, safe="") + "/" for i in ids] + [base_url]


def _check_and_install(
    store: GalleryStore, http: Http, state: dict[str, Any], current: int, max_bytes: int, use_deltas: bool, now: float
) -> SyncResult:
    """One look at the pointer, and the download + install it calls for; updates ``state`` on success."""
    fresh_until = state.get("fresh_until")
    # a 304 is only worth asking for when the pointer it stands for was verified, and its expiry kept
    ask_304 = bool(state.get("pointer_etag") and current and isinstance(fresh_until, (int, float)))
    code, body, resp_headers = http.get_small(
        POINTER, MAX_POINTER_BYTES, {"If-None-Match": state["pointer_etag"]} if ask_304 else {}
    )
    if code == 304:
        if not ask_304 or not isinstance(fresh_until, (int, float)):
            raise SyncError(f"GET {http.base}{POINTER}: HTTP 304 to a request that was not conditional; will retry")
        if now >= float(fresh_until):
            raise BundleRejected(
                "expired",
                f"{http.base}{POINTER} is unchanged since this unit verified it, and it expired at "
                f"{format_utc(float(fresh_until))}: the server, or a mirror, keeps serving an old pointer. The "
                f"installed gallery {current} stays in use but is stale: have the publisher re-sign it "
                "(`edgeface gallery refresh`)",
            )
        return SyncResult("not_modified", current, current, message="no new publication")
    ptr = verify_pointer(body, store.trusted, http.base + POINTER, now)
    result = SyncResult("failed", current, current, ptr.version)
    if ptr.version < current:
        raise BundleRejected(
            "rollback",
            f"the server offers version {ptr.version}, older than the installed {current}; keeping {current}",
        )
    if ptr.version == current:
        result = SyncResult("up_to_date", current, current, ptr.version)
    else:
        manifest = None
        if use_deltas and current and current in ptr.deltas:
            try:
                manifest = _sync_delta(store, http, ptr.deltas[current], current, max_bytes)
                result.via = "delta"
            except TransportRefused:
                raise  # a redirect elsewhere: the full bundle would go the same way
            except (BundleRejected, GalleryError, ValueError, OSError) as e:
                log.warning("gallery.sync.delta_failed", error=str(e), fallback="full bundle")
        if manifest is None:
            manifest = _sync_full(store, http, ptr.bundle, current, max_bytes)
            result.via = "full"
        result.status, result.installed = "updated", manifest.gallery_version
    if result.installed == ptr.version:  # the installed gallery is the newest, as of a signed, unexpired pointer
        state.update(
            fresh_until=ptr.expires_ts,
            pointer={
                "version": ptr.version,
                "signed_at": ptr.signed_at,
                "expires_at": ptr.expires_at,
                "verified_at": now,
            },
        )
        if resp_headers.get("ETag"):
            state["pointer_etag"] = resp_headers["ETag"]
    return result


class Syncer:
    """Runs :func:`sync_once` every ``interval_s`` (with jitter), at once when triggered.

    ``on_installed(version)`` is called after each switch so the daemon can reopen the gallery.
    ``pending`` (a store) and ``pending_embedder``: while the unit is to change its model (see switch.py),
    each round also syncs the gallery for the new model into that store, and calls ``on_pending`` with
    the outcome; the store the unit answers from is never touched by it.
    """

    def __init__(
        self,
        store: GalleryStore,
        base_url: str,
        *,
        interval_s: float = 3600,
        timeout: float = 30.0,
        ca_file: Path | None = None,
        max_bytes: int = 8 * 1024**3,
        on_installed: Callable[[int], None] | None = None,
        headers: dict[str, str] | None = None,
        allow_insecure_http: bool = False,
        embedder_id: str | None = None,
        pending: GalleryStore | None = None,
        pending_embedder: str | None = None,
        on_pending: Callable[[SyncResult], None] | None = None,
    ) -> None:
        self.store, self.base_url, self.interval_s = store, base_url, interval_s
        self.headers, self.allow_insecure_http = headers, allow_insecure_http
        self.timeout, self.ca_file, self.max_bytes = timeout, ca_file, max_bytes
        self.on_installed = on_installed
        self.embedder_id = embedder_id
        self.pending, self.pending_embedder, self.on_pending = pending, pending_embedder, on_pending
        self._wake = threading.Event()
        self.last: SyncResult | None = None
        self.last_pending: SyncResult | None = None

    def trigger(self, announcement: bytes | dict[str, Any] | None = None) -> bool:
        """Called by the MQTT client with the retained gallery announcement (announce.v1.json:
        ``{"gallery_version": N, ...}``).

        Wakes the sync loop if the announced version is newer than the installed one (or unknown).
        Returns whether a sync was requested. Never raises on a malformed announcement. The
        announcement's ``url`` is deliberately not used: the sync asks the configured ``base_url``
        only, with the same checks as every sync (an announcement cannot send the unit's token elsewhere).
        """
        version = None
        try:
            doc = json.loads(announcement) if isinstance(announcement, (bytes, str)) else (announcement or {})
            announced = doc.get("gallery_version")
            version = int(announced) if announced is not None else None
        except (ValueError, TypeError, AttributeError):
            log.warning("gallery.sync.bad_announcement")
        installed = self.store.installed_version()
        if self.pending is not None:
            installed = min(installed, self.pending.installed_version())
        if version is not None and version <= installed:
            return False
        self._wake.set()
        return True

    def _sync(self, store: GalleryStore, embedder_id: str | None) -> SyncResult:
        return sync_once(
            store,
            self.base_url,
            timeout=self.timeout,
            ca_file=self.ca_file,
            max_bytes=self.max_bytes,
            headers=self.headers,
            allow_insecure_http=self.allow_insecure_http,
            embedder_id=embedder_id,
        )

    def run_once(self) -> SyncResult:
        """One round: the gallery the unit answers from, then (while a model change is pending) the new one's.
        Returns the first; a failure of the second is returned instead (so the loop backs off)."""
        self.last = self._sync(self.store, self.embedder_id)
        if self.last.status == "updated" and self.on_installed:
            self.on_installed(self.last.installed)
        if self.pending is None:
            return self.last
        self.last_pending = self._sync(self.pending, self.pending_embedder)
        if self.on_pending is not None:
            self.on_pending(self.last_pending)
        return self.last_pending if self.last_pending.status == "failed" else self.last

    def run(self, stop: threading.Event) -> None:
        """Loop until ``stop`` is set; failures back off (doubling, up to the interval)."""
        backoff = 30.0
        while not stop.is_set():
            self._wake.clear()  # a trigger during the sync below wakes the next wait at once
            result = self.run_once()
            if result.status == "failed":
                delay = min(backoff, self.interval_s)
                backoff = min(backoff * 2, self.interval_s)
            else:
                delay, backoff = self.interval_s, 30.0
            delay *= random.uniform(0.9, 1.1)  # a fleet does not all ask at once
            deadline = time.monotonic() + delay
            while not stop.is_set() and not self._wake.is_set() and time.monotonic() < deadline:
                self._wake.wait(min(1.0, max(0.0, deadline - time.monotonic())))
