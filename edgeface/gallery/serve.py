"""Serving a publish folder to devices over HTTP: static files with ETag, 304 and byte ranges.

A WSGI application, so the central server can mount it under its own framework and authentication
(e.g. Flask's ``DispatcherMiddleware``); ``edgeface gallery serve DIR`` runs it alone on the standard
library's threaded WSGI server. Written on the standard library rather than a framework dependency:
devices never import it, the feature set is small and fixed (GET/HEAD of files, strong ETags,
``If-None-Match``, single ``Range`` with ``If-Range``), and each rule is tested over real HTTP.

ETags are the file's SHA-256 (cached per inode, size and mtime), so several server processes serving
copies of the same folder give the same ETag, and a resumed download can never splice two versions.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from ..logs import get_logger

log = get_logger(__name__)

StartResponse = Callable[..., Any]
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class GalleryFiles:
    """The WSGI app: ``GET /<path>`` for files under ``root`` (no listings, no dotfiles, no escapes)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self._etags: dict[tuple[int, int, int, int], str] = {}
        self._lock = threading.Lock()

    def etag(self, path: Path, st: os.stat_result) -> str:
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            tag = self._etags.get(key)
        if tag is None:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                while block := f.read(1 << 20):
                    h.update(block)
            tag = f'"{h.hexdigest()}"'
            with self._lock:
                if len(self._etags) > 4096:
                    self._etags.clear()
                self._etags[key] = tag
        return tag

    def resolve(self, url_path: str) -> Path | None:
        parts = [p for p in url_path.split("/") if p]
        if any(p.startswith(".") or "\\" in p or "\0" in p for p in parts):
            return None
        path = (self.root / "/".join(parts)).resolve()
        if path != self.root and self.root not in path.parents:
            return None
        return path if path.is_file() else None

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return _plain(start_response, "405 Method Not Allowed", b"GET or HEAD only\n", [("Allow", "GET, HEAD")])
        path = self.resolve(environ.get("PATH_INFO", ""))
        if path is None:
            return _plain(start_response, "404 Not Found", b"not found\n")
        st = path.stat()
        etag = self.etag(path, st)
        size = st.st_size
        headers = [
            ("ETag", etag),
            ("Accept-Ranges", "bytes"),
            ("Cache-Control", "no-cache" if _changes(path, self.root) else "public, max-age=31536000, immutable"),
        ]
        inm = environ.get("HTTP_IF_NONE_MATCH")
        if inm and (inm.strip() == "*" or etag in [t.strip() for t in inm.split(",")]):
            start_response("304 Not Modified", headers)
            return []
        start, end = 0, size - 1
        status = "200 OK"
        rng = environ.get("HTTP_RANGE")
        if_range = environ.get("HTTP_IF_RANGE")
        if rng and (not if_range or if_range.strip() == etag):
            m = _RANGE.match(rng.strip())
            if m and (m.group(1) or m.group(2)):  # one range; several ranges get the whole file (allowed)
                a, b = m.group(1), m.group(2)
                if a:
                    start, end = int(a), min(int(b), size - 1) if b else size - 1
                else:
                    start, end = max(0, size - int(b)), size - 1
                if start >= size or start > end:
                    return _plain(
                        start_response,
                        "416 Range Not Satisfiable",
                        b"",
                        [("Content-Range", f"bytes */{size}"), *headers],
                    )
                status = "206 Partial Content"
                headers.append(("Content-Range", f"bytes {start}-{end}/{size}"))
        length = max(0, end - start + 1)
        headers += [("Content-Length", str(length)), ("Content-Type", _type(path))]
        start_response(status, headers)
        if method == "HEAD":
            return []
        return _read_range(path, start, length)


def _changes(path: Path, root: Path) -> bool:
    """Whether a file is replaced in place (a caching proxy must ask again): a pointer (``latest.json``, at
    the root or in an embedder's folder, ``<root>/<embedder-id>/latest.json``) or any JSON file at the root.
    Everything else (bundles and deltas, in folders named by their version) never changes once written."""
    return path.name == "latest.json" or (path.suffix == ".json" and path.parent == root)


def _type(path: Path) -> str:
    return {".json": "application/json", ".ndjson": "application/x-ndjson"}.get(path.suffix, "application/octet-stream")


def _plain(
    start_response: StartResponse, status: str, body: bytes, extra: list[tuple[str, str]] | None = None
) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body))), *(extra or [])])
    return [body]


def _read_range(path: Path, start: int, length: int, chunk: int = 1 << 16) -> Iterator[bytes]:
    with open(path, "rb") as f:
        f.seek(start)
        left = length
        while left > 0:
            block = f.read(min(chunk, left))
            if not block:
                return
            left -= len(block)
            yield block


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug("gallery.serve.request", path=self.path, status=str(code), client=self.client_address[0])


def make_gallery_server(
    root: Path, host: str = "127.0.0.1", port: int = 8470, app: Callable[..., Iterable[bytes]] | None = None
) -> WSGIServer:
    """A threaded HTTP server for ``root`` (``port`` 0 picks a free one: see ``server.server_port``)."""
    return make_server(host, port, app or GalleryFiles(root), server_class=_Server, handler_class=_QuietHandler)
