"""Device side of gallery sync: pull new versions over HTTP(S), verify everything, switch atomically.

One sync (:func:`sync_once`):

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

**Credentials** (the unit's bundle-download token, :func:`auth_headers`) never leave the origin of
``gallery.sync_url``: a redirect to another scheme, host or port is refused, not followed (see
:class:`SameOriginRedirects` for why), and they are never sent over plain ``http://`` unless
``gallery.allow_insecure_http`` says so (a lab network).

**Freshness.** ``latest.json`` is signed and carries ``expires_at`` (see publish.py): an expired pointer
is refused like a bad signature, so a mirror that keeps serving an old, validly signed pointer cannot
freeze a unit on an old gallery unnoticed. The expiry of the last verified pointer that named the
installed version is kept in ``sync-state.json`` (``fresh_until``); past it the gallery is *stale*
(``edgeface status``), and it keeps answering.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import random
import shutil
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BundleRejected, GalleryError, SyncError
from ..logs import get_logger
from .bundle import INDEX, MANIFEST, PROJECTION, SIGNATURE, VECTORS, check_acceptable, read_signed_manifest
from .crypto import DecryptError
from .delta import DELTA, DELTA_SIG, PATCH_FILES, DeltaSpec, apply_delta
from .index import self_check
from .manifest import FileEntry, Manifest
from .publish import MAX_POINTER_BYTES, POINTER, format_utc, verify_pointer
from .store import GalleryStore, checkpoint, write_local_index_note

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


class TransportRefused(SyncError):
    """The unit refused to talk to the server this way (credentials over plain HTTP, a redirect to
    another origin). Not a network failure: retrying does not help, the configuration must change.
    ``reason`` is a short code ("insecure_http", "cross_origin_redirect", "credentials_in_url")."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


CREDENTIAL_HEADERS = ("authorization", "cookie", "proxy-authorization")
DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of ``url``, lower-cased, the default port filled in: what "same origin" compares."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        raise SyncError(f"{url!r} has an invalid port") from None
    return scheme, (parts.hostname or "").lower(), port or DEFAULT_PORTS.get(scheme, 0)


def has_credentials(headers: dict[str, str] | None) -> bool:
    return any(k.lower() in CREDENTIAL_HEADERS for k in (headers or {}))


def check_transport(base_url: str, headers: dict[str, str] | None, allow_insecure_http: bool = False) -> None:
    """Refuse a sync URL that would expose the unit's credentials (raises :class:`TransportRefused`)."""
    parts = urllib.parse.urlsplit(base_url)
    if parts.scheme.lower() not in DEFAULT_PORTS or not parts.hostname:
        raise SyncError(f"gallery.sync_url {base_url!r} must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise TransportRefused("credentials_in_url", "gallery.sync_url carries a user name or password; remove it "
                               "from the URL and put the token in gallery.sync_password_file (the user name is "
                               "gallery.sync_username or device.id)")
    if parts.scheme.lower() == "http" and has_credentials(headers) and not allow_insecure_http:
        raise TransportRefused(
            "insecure_http",
            f"gallery.sync_url {base_url} is plain http:// but the unit would send its bundle-download token "
            "(gallery.sync_password_file) with every request, readable by anyone on the network path: use "
            "the server's https:// URL (gallery.sync_ca_file for a private CA); on a closed lab network only, "
            "set gallery.allow_insecure_http = true")


class SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only within the origin (scheme, host, port) of the request; refuses the others.

    urllib's default handler copies every header, ``Authorization`` included, to wherever the server
    redirects. Refusing (rather than following without the header) is deliberate: the unit is
    configured with one server it trusts with its token and its biometric downloads; a redirect
    elsewhere is either a misconfiguration (fix ``gallery.sync_url``) or someone steering the unit to
    a host it was never told to trust, possibly from https:// down to http://. Same-origin redirects
    (``/gallery`` -> ``/gallery/``) keep the headers, as the server that set them is the same.
    """

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> urllib.request.Request | None:
        if origin(newurl) != origin(req.full_url):
            fp.close()
            log.error("gallery.sync.redirect_refused", url=req.full_url, location=newurl, status=code)
            raise TransportRefused(
                "cross_origin_redirect",
                f"GET {req.full_url}: the server redirected (HTTP {code}) to {newurl}, another origin (scheme, "
                "host or port); refused, so the unit's credentials never leave the configured server: point "
                "gallery.sync_url at the final location if that server is to be trusted")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class Http:
    """A minimal HTTP(S) client over urllib (standard library: nothing extra to install on a unit).

    Credentials in ``headers`` are only ever sent to the origin of ``base_url`` (see
    :func:`check_transport` and :class:`SameOriginRedirects`).
    """

    def __init__(self, base_url: str, timeout: float = 30.0, ca_file: Path | None = None,
                 headers: dict[str, str] | None = None, *, allow_insecure_http: bool = False) -> None:
        check_transport(base_url, headers, allow_insecure_http)
        self.base = base_url.rstrip("/") + "/"
        self.timeout = timeout
        self.headers = dict(headers or {})  # e.g. the device's Authorization for the central server
        handlers: list[Any] = [SameOriginRedirects()]
        if base_url.lower().startswith("https://"):
            handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(
                cafile=str(ca_file) if ca_file else None)))
        self.opener = urllib.request.build_opener(*handlers)
        self.downloaded = 0

    def open(self, rel: str, headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
        """The response (caller closes it); HTTP errors other than 304 raise SyncError."""
        url = self.base + rel.lstrip("/")
        req = urllib.request.Request(url, headers={"User-Agent": "edgeface-sync/1", **self.headers, **(headers or {})})
        try:
            return self.opener.open(req, timeout=self.timeout)
        except urllib.error.HTTPError as e:
            if e.code in (304, 416):
                return e
            raise SyncError(f"GET {url}: HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, OSError) as e:
            raise SyncError(f"GET {url}: {getattr(e, 'reason', e)}; will retry at the next sync") from None

    def get_small(self, rel: str, limit: int, headers: dict[str, str] | None = None) -> tuple[int, bytes, Any]:
        resp = self.open(rel, headers)
        with resp:
            code = resp.status if hasattr(resp, "status") else resp.code
            if code == 304:
                return 304, b"", resp.headers
            try:
                body = resp.read(limit + 1)
            except (OSError, ValueError, http.client.HTTPException) as e:
                raise SyncError(f"GET {rel}: {e}") from None
        self.downloaded += len(body)
        if len(body) > limit:
            raise SyncError(f"GET {rel}: more than {limit} bytes; not a gallery file")
        return code, body, resp.headers

    def download(self, rel: str, dest: Path, name: str, want: FileEntry, store: GalleryStore) -> FileEntry:
        """Fetch ``rel`` into ``dest`` (``dest.part`` while incomplete), resuming a previous partial download."""
        part = dest.with_name(dest.name + ".part")
        etag_file = dest.with_name(dest.name + ".part-etag")
        writer = store.writer(part, name, resume=True)
        headers = {}
        if writer.size and etag_file.exists():
            headers = {"Range": f"bytes={writer.size}-", "If-Range": etag_file.read_text().strip()}
        resumed = bool(headers)
        try:
            resp = self.open(rel, headers)
        except BaseException:
            writer.abandon()
            raise
        try:
            with resp:
                code = resp.status if hasattr(resp, "status") else resp.code
                if code == 206:
                    cr = resp.headers.get("Content-Range", "")
                    if not cr.startswith(f"bytes {writer.size}-"):
                        raise SyncError(f"GET {rel}: asked from byte {writer.size}, got range {cr!r}")
                elif code == 200:
                    if writer.size:  # the server sends the whole file (file changed, or no range support)
                        writer.abandon()
                        writer = store.writer(part, name, resume=False)
                    resumed = False
                else:
                    raise SyncError(f"GET {rel}: unexpected HTTP {code}")
                if resp.headers.get("ETag"):
                    etag_file.write_text(resp.headers["ETag"])
                log.info("gallery.sync.download", file=rel, offset=writer.size, resumed=resumed)
                while True:
                    block = resp.read(1 << 20)
                    if not block:
                        break
                    if writer.size + len(block) > want.size:
                        raise BundleRejected("size_mismatch", f"{rel} is larger than the {want.size} bytes the "
                                             "signed manifest says")
                    writer.write(block)
                    self.downloaded += len(block)
                    checkpoint("downloading")
        except BundleRejected:
            writer.abandon()
            part.unlink(missing_ok=True)
            raise
        except (OSError, ValueError, SyncError, http.client.HTTPException) as e:  # dropped, timed out: resume
            writer.abandon()
            raise SyncError(f"GET {rel}: interrupted after {writer.size} of {want.size} bytes ({e}); the "
                            "next sync resumes it") from None
        if writer.size < want.size:
            writer.abandon()
            raise SyncError(f"GET {rel}: connection closed after {writer.size} of {want.size} bytes; the next "
                            "sync resumes it")
        got = writer.close()
        if got != want:
            part.unlink(missing_ok=True)
            etag_file.unlink(missing_ok=True)
            raise BundleRejected("hash_mismatch", f"{rel}: downloaded content does not match the signed "
                                 "manifest (altered on the server or in transit)")
        part.rename(dest)
        etag_file.unlink(missing_ok=True)
        return got


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
        raise BundleRejected("too_large", f"gallery version {m.gallery_version} is {m.total_bytes} bytes, more "
                             f"than gallery.sync_max_bytes = {limit}")


def _prepare_staging(store: GalleryStore, manifest_bytes: bytes, sig: bytes | None, version: int,
                     suffix: str = "") -> Path:
    staging = store.staging(version) if not suffix else store.staging(version).with_name(
        store.staging(version).name + suffix)
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
    check_acceptable(manifest, embedder_sha256=store.embedder_sha256, newer_than=current, where=http.base + rel)
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
    check_acceptable(target, embedder_sha256=store.embedder_sha256, newer_than=current, where=http.base + rel)
    _check_size(target, max_bytes)
    if (spec.base_version != current or spec.base_manifest_sha256 != store.installed_manifest_sha256()
            or spec.target_manifest_sha256 != hashlib.sha256(data).hexdigest()):
        raise BundleRejected("format", f"delta {rel} is not from the installed version {current} to the manifest "
                             "it carries")
    staging = _prepare_staging(store, data, sig, target.gallery_version, suffix="-delta")
    try:
        return _apply_delta_in(store, http, rel, spec, target, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # small: a retry downloads it again
        raise


def _apply_delta_in(store: GalleryStore, http: Http, rel: str, spec: DeltaSpec, target: Manifest,
                    staging: Path) -> Manifest:
    patch_dir = staging / "delta"
    patch_dir.mkdir(exist_ok=True)
    for name in PATCH_FILES:
        if not (patch_dir / name).exists():
            http.download(rel + name, patch_dir / name, name, spec.files[name], store)
    checkpoint("downloaded")
    base = store.open(exact_max=2**62)  # verified plaintext of the installed version (no index)
    if base is None:
        raise GalleryError("no installed gallery to apply a delta to")
    patch_reader = store.reader(patch_dir)
    try:
        patch = {n: patch_reader.materialize(n, spec.files[n]) for n in PATCH_FILES}
        base_entries = [base.entries.raw(i) for i in range(len(base.entries))]
        base_identities = [base.identities.raw(i) for i in range(len(base.identities))]
        for name in target.files:
            (staging / name).unlink(missing_ok=True)
        files, index_differs = apply_delta(base.vectors, base_entries, base_identities, patch, target,
                                           store.sink(staging))
        if index_differs:
            reader = store.reader(staging)
            try:
                vec = reader.materialize(VECTORS, target.files[VECTORS])
                proj = reader.materialize(PROJECTION, target.files[PROJECTION])
                self_check(np.load(vec, mmap_mode="r"), reader.materialize(INDEX, None, verify=False),
                           np.load(proj))
            finally:
                reader.close()
            write_local_index_note(staging, files[INDEX])
    finally:
        patch_reader.close()
        base.close()
    shutil.rmtree(patch_dir)
    return store.install(staging)


def auth_headers(username: str, password_file: Path | None) -> dict[str, str]:
    """HTTP Basic credentials for the central server's bundle endpoint (``{}`` without a password file)."""
    if password_file is None:
        return {}
    try:
        lines = Path(password_file).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise SyncError(f"gallery.sync_password_file {str(password_file)!r} cannot be read: {e}") from None
    token = lines[0].strip() if lines else ""
    if not token or not username:
        raise SyncError("gallery sync credentials need a user name (gallery.sync_username or device.id) and a "
                        "token in gallery.sync_password_file")
    import base64

    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{token}".encode()).decode("ascii")}


def sync_once(store: GalleryStore, base_url: str, *, timeout: float = 30.0, ca_file: Path | None = None,
              max_bytes: int = 8 * 1024**3, use_deltas: bool = True, headers: dict[str, str] | None = None,
              allow_insecure_http: bool = False, now: float | None = None) -> SyncResult:
    """Check the server once and install a newer gallery if there is one (see the module docstring).

    ``headers`` go with every request to ``base_url``'s origin (:func:`auth_headers` for the central
    server's device login); with credentials, a plain ``http://`` URL is refused unless
    ``allow_insecure_http``. ``now`` (seconds since the epoch) is the clock pointer expiry is judged by.
    """
    store.recover()
    current = store.installed_version()
    state = _load_state(store)
    result = SyncResult("failed", current, current)
    http: Http | None = None
    try:
        http = Http(base_url, timeout, ca_file, headers, allow_insecure_http=allow_insecure_http)
        result = _check_and_install(store, http, state, current, max_bytes, use_deltas,
                                    time.time() if now is None else now)
    except (BundleRejected, TransportRefused) as e:
        result.status, result.reason, result.message = "refused", e.reason, str(e)
        log.error("gallery.sync.refused", reason=e.reason, error=str(e), installed=current)
    except (SyncError, DecryptError, GalleryError, OSError) as e:
        result.status, result.reason, result.message = "failed", "network" if isinstance(e, SyncError) else \
            "error", str(e)
        log.warning("gallery.sync.failed", error=str(e), installed=current)
    result.downloaded_bytes = http.downloaded if http is not None else 0
    state.update(last_check=time.time(), last_result=result.to_dict())
    if result.status in ("updated", "up_to_date", "not_modified"):
        state["last_success"] = time.time()
    _save_state(store, state)
    if result.status == "updated":
        log.info("gallery.sync.updated", version=result.installed, previous=current, via=result.via,
                 bytes=result.downloaded_bytes)
    return result


def _check_and_install(store: GalleryStore, http: Http, state: dict[str, Any], current: int, max_bytes: int,
                       use_deltas: bool, now: float) -> SyncResult:
    """One look at the pointer, and the download + install it calls for; updates ``state`` on success."""
    fresh_until = state.get("fresh_until")
    # a 304 is only worth asking for when the pointer it stands for was verified, and its expiry kept
    ask_304 = bool(state.get("pointer_etag") and current and isinstance(fresh_until, (int, float)))
    code, body, resp_headers = http.get_small(POINTER, MAX_POINTER_BYTES,
                                              {"If-None-Match": state["pointer_etag"]} if ask_304 else {})
    if code == 304:
        if not ask_304:
            raise SyncError(f"GET {http.base}{POINTER}: HTTP 304 to a request that was not conditional; will retry")
        if now >= float(fresh_until):
            raise BundleRejected(
                "expired", f"{http.base}{POINTER} is unchanged since this unit verified it, and it expired at "
                f"{format_utc(float(fresh_until))}: the server, or a mirror, keeps serving an old pointer. The "
                f"installed gallery {current} stays in use but is stale: have the publisher re-sign it "
                "(`edgeface gallery refresh`)")
        return SyncResult("not_modified", current, current, message="no new publication")
    ptr = verify_pointer(body, store.trusted, http.base + POINTER, now)
    result = SyncResult("failed", current, current, ptr.version)
    if ptr.version < current:
        raise BundleRejected("rollback", f"the server offers version {ptr.version}, older than the "
                             f"installed {current}; keeping {current}")
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
        state.update(fresh_until=ptr.expires_ts, pointer={"version": ptr.version, "signed_at": ptr.signed_at,
                                                          "expires_at": ptr.expires_at, "verified_at": now})
        if resp_headers.get("ETag"):
            state["pointer_etag"] = resp_headers["ETag"]
    return result


class Syncer:
    """Runs :func:`sync_once` every ``interval_s`` (with jitter), at once when triggered.

    ``on_installed(version)`` is called after each switch so the daemon can reopen the gallery.
    """

    def __init__(self, store: GalleryStore, base_url: str, *, interval_s: float = 3600, timeout: float = 30.0,
                 ca_file: Path | None = None, max_bytes: int = 8 * 1024**3, on_installed=None,  # type: ignore[no-untyped-def]
                 headers: dict[str, str] | None = None, allow_insecure_http: bool = False) -> None:
        self.store, self.base_url, self.interval_s = store, base_url, interval_s
        self.headers, self.allow_insecure_http = headers, allow_insecure_http
        self.timeout, self.ca_file, self.max_bytes = timeout, ca_file, max_bytes
        self.on_installed = on_installed
        self._wake = threading.Event()
        self.last: SyncResult | None = None

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
        if version is not None and version <= self.store.installed_version():
            return False
        self._wake.set()
        return True

    def run_once(self) -> SyncResult:
        self.last = sync_once(self.store, self.base_url, timeout=self.timeout, ca_file=self.ca_file,
                              max_bytes=self.max_bytes, headers=self.headers,
                              allow_insecure_http=self.allow_insecure_http)
        if self.last.status == "updated" and self.on_installed:
            self.on_installed(self.last.installed)
        return self.last

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
