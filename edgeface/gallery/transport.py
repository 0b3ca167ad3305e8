"""HTTP(S) for gallery sync: a small client over urllib whose credentials never leave one origin.

The unit's bundle-download token (:func:`auth_headers`) is sent only to the origin (scheme, host, port)
of ``gallery.sync_url``: a redirect to another origin is refused, not followed (see
:class:`SameOriginRedirects`), and credentials never go over plain ``http://`` unless
``gallery.allow_insecure_http`` says so (a lab network). Standard library only: nothing extra to
install on a unit.
"""

from __future__ import annotations

import http.client
import ssl
import urllib.error
import urllib.parse
import urllib.request
import urllib.response
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BundleRejected, SyncError
from ..logs import get_logger
from .manifest import FileEntry
from .store import checkpoint

if TYPE_CHECKING:
    from .store import GalleryStore

log = get_logger(__name__)


class TransportRefused(SyncError):
    """The unit refused to talk to the server this way (credentials over plain HTTP, a redirect to
    another origin). Not a network failure: retrying does not help, the configuration must change.
    ``reason`` is a short code ("insecure_http", "cross_origin_redirect", "credentials_in_url")."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class NotFound(SyncError):
    """HTTP 404: the server has no such file (e.g. no gallery published for this unit's embedder)."""

    def __init__(self, rel: str, message: str) -> None:
        super().__init__(message)
        self.rel = rel


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
        raise TransportRefused(
            "credentials_in_url",
            "gallery.sync_url carries a user name or password; remove it "
            "from the URL and put the token in gallery.sync_password_file (the user name is "
            "gallery.sync_username or device.id)",
        )
    if parts.scheme.lower() == "http" and has_credentials(headers) and not allow_insecure_http:
        raise TransportRefused(
            "insecure_http",
            f"gallery.sync_url {base_url} is plain http:// but the unit would send its bundle-download token "
            "(gallery.sync_password_file) with every request, readable by anyone on the network path: use "
            "the server's https:// URL (gallery.sync_ca_file for a private CA); on a closed lab network only, "
            "set gallery.allow_insecure_http = true",
        )


class SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only within the origin (scheme, host, port) of the request; refuses the others.

    urllib's default handler copies every header, ``Authorization`` included, to wherever the server
    redirects. Refusing (rather than following without the header) is deliberate: the unit is
    configured with one server it trusts with its token and its biometric downloads; a redirect
    elsewhere is either a misconfiguration (fix ``gallery.sync_url``) or someone steering the unit to
    a host it was never told to trust, possibly from https:// down to http://. Same-origin redirects
    (``/gallery`` -> ``/gallery/``) keep the headers, as the server that set them is the same.
    """

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        if origin(newurl) != origin(req.full_url):
            fp.close()
            log.error("gallery.sync.redirect_refused", url=req.full_url, location=newurl, status=code)
            raise TransportRefused(
                "cross_origin_redirect",
                f"GET {req.full_url}: the server redirected (HTTP {code}) to {newurl}, another origin (scheme, "
                "host or port); refused, so the unit's credentials never leave the configured server: point "
                "gallery.sync_url at the final location if that server is to be trusted",
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class Http:
    """A minimal HTTP(S) client over urllib (standard library: nothing extra to install on a unit).

    Credentials in ``headers`` are only ever sent to the origin of ``base_url`` (see
    :func:`check_transport` and :class:`SameOriginRedirects`).
    """

    def __init__(
        self,
        base_url: str,
        timeout: float = 30.0,
        ca_file: Path | None = None,
        headers: dict[str, str] | None = None,
        *,
        allow_insecure_http: bool = False,
    ) -> None:
        check_transport(base_url, headers, allow_insecure_http)
        self.base = base_url.rstrip("/") + "/"
        self.timeout = timeout
        self.headers = dict(headers or {})  # e.g. the device's Authorization for the central server
        handlers: list[Any] = [SameOriginRedirects()]
        if base_url.lower().startswith("https://"):
            handlers.append(
                urllib.request.HTTPSHandler(
                    context=ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
                )
            )
        self.opener = urllib.request.build_opener(*handlers)
        self.downloaded = 0

    def open(self, rel: str, headers: dict[str, str] | None = None) -> urllib.response.addinfourl:
        """The response (caller closes it; a 304 or 416 comes as the HTTPError urllib raises, which is a
        response too); other HTTP errors raise SyncError."""
        url = self.base + rel.lstrip("/")
        req = urllib.request.Request(url, headers={"User-Agent": "edgeface-sync/1", **self.headers, **(headers or {})})
        try:
            resp: urllib.response.addinfourl = self.opener.open(req, timeout=self.timeout)
            return resp
        except urllib.error.HTTPError as e:
            if e.code in (304, 416):
                return e
            if e.code == 404:
                raise NotFound(rel, f"GET {url}: HTTP 404 {e.reason}") from None
            raise SyncError(f"GET {url}: HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, OSError) as e:
            raise SyncError(f"GET {url}: {getattr(e, 'reason', e)}; will retry at the next sync") from None

    def get_small(self, rel: str, limit: int, headers: dict[str, str] | None = None) -> tuple[int, bytes, Any]:
        resp = self.open(rel, headers)
        with resp:
            code = resp.status or 0
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
                code = resp.status or 0
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
                        raise BundleRejected(
                            "size_mismatch", f"{rel} is larger than the {want.size} bytes the signed manifest says"
                        )
                    writer.write(block)
                    self.downloaded += len(block)
                    checkpoint("downloading")
        except BundleRejected:
            writer.abandon()
            part.unlink(missing_ok=True)
            raise
        except (OSError, ValueError, SyncError, http.client.HTTPException) as e:  # dropped, timed out: resume
            writer.abandon()
            raise SyncError(
                f"GET {rel}: interrupted after {writer.size} of {want.size} bytes ({e}); the next sync resumes it"
            ) from None
        if writer.size < want.size:
            writer.abandon()
            raise SyncError(
                f"GET {rel}: connection closed after {writer.size} of {want.size} bytes; the next sync resumes it"
            )
        got = writer.close()
        if got != want:
            part.unlink(missing_ok=True)
            etag_file.unlink(missing_ok=True)
            raise BundleRejected(
                "hash_mismatch",
                f"{rel}: downloaded content does not match the signed manifest (altered on the server or in transit)",
            )
        part.rename(dest)
        etag_file.unlink(missing_ok=True)
        return got


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
        raise SyncError(
            "gallery sync credentials need a user name (gallery.sync_username or device.id) and a "
            "token in gallery.sync_password_file"
        )
    import base64

    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{token}".encode()).decode("ascii")}
