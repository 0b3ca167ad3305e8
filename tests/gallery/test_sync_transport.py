"""The unit's bundle-download token stays with the configured server: real HTTP servers on loopback.

Two servers on two ports of 127.0.0.1 are two origins (scheme, host, port). The first redirects to the
second; the second must never see the Authorization header, and the sync is refused (by design: a
redirect to another origin is not followed, see SameOriginRedirects) while the installed gallery keeps
answering. A plain http:// URL with credentials is refused unless gallery.allow_insecure_http is on.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gallery_helpers import Content

from edgeface.config import Config
from edgeface.gallery import signing
from edgeface.gallery.manifest import EmbedderRef
from edgeface.gallery.serve import GalleryFiles, make_gallery_server
from edgeface.gallery.sync import Syncer, sync_once
from edgeface.gallery.transport import auth_headers
from edgeface.vision.cards import find_card

TOKEN = "s3cret-device-token"
App = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class Seen:
    """WSGI middleware recording each request's path and Authorization header."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.requests: list[tuple[str, str | None]] = []

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        self.requests.append((environ.get("PATH_INFO", ""), environ.get("HTTP_AUTHORIZATION")))
        return self.app(environ, start_response)

    @property
    def authorizations(self) -> list[str]:
        return [a for _, a in self.requests if a]


def redirect_to(
    target: str,
    *,
    only: Callable[[str], bool] = lambda path: True,
    code: str = "302 Found",
    fallback: App | None = None,
) -> App:
    """An app that redirects the paths ``only`` selects to ``target`` + path, and hands the rest to ``fallback``."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if only(path) or fallback is None:
            start_response(code, [("Location", target.rstrip("/") + path), ("Content-Length", "0")])
            return []
        return fallback(environ, start_response)

    return app


def needs_token(app: App) -> App:
    """401 without the unit's Basic token (as the central server's bundle endpoint answers)."""
    want = "Basic " + base64.b64encode(f"unit-1:{TOKEN}".encode()).decode()

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("HTTP_AUTHORIZATION") != want:
            start_response("401 Unauthorized", [("Content-Length", "0")])
            return []
        return app(environ, start_response)

    return guarded


@pytest.fixture
def http_server() -> Iterator[Callable[[App], tuple[str, Seen]]]:
    servers = []

    def start(app: App) -> tuple[str, Seen]:
        seen = Seen(app)
        srv = make_gallery_server(Path("."), port=0, app=seen)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_port}/", seen

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


@pytest.fixture
def token_headers(tmp_path: Path) -> dict[str, str]:
    f = tmp_path / "gallery-token"
    f.write_text(TOKEN + "\n")
    os.chmod(f, 0o600)
    return auth_headers("unit-1", f)


def _installed_v1(
    tmp_path: Path, signer: Any, make_store: Any, http_server: Any
) -> tuple[Any, Content, Path, str, Seen]:
    """A publish folder served by a second server (origin B), and a unit that installed version 1 from it."""
    content = Content(200, seed=11)
    pub = tmp_path / "pub"
    content.publish(pub, signer)
    url_b, seen_b = http_server(GalleryFiles(pub))
    store = make_store()
    assert sync_once(store, url_b).installed == 1  # no credentials: a plain mirror
    content.change(2, 2).publish(pub, signer, delta_depth=0)  # version 2 waits on B
    seen_b.requests.clear()
    return store, content, pub, url_b, seen_b


def _answers_v1(store: Any, content: Content) -> None:
    g = store.open()
    assert g is not None and g.version == 1
    row = len(content.vectors) - 1
    assert g.identify(content.vectors[row], top_k=1).match.identity == content.entries[row]["identity"]
    g.close()


@pytest.mark.parametrize("redirected", ["everything", "bundle files only"])
def test_redirect_to_another_origin_never_carries_the_token(
    tmp_path, signer, make_store, http_server, token_headers, redirected
):
    store, content, _, url_b, seen_b = _installed_v1(tmp_path, signer, make_store, http_server)
    pub_files = GalleryFiles(tmp_path / "pub")
    only = (lambda p: True) if redirected == "everything" else (lambda p: p != "/latest.json")
    url_a, seen_a = http_server(redirect_to(url_b, only=only, fallback=pub_files))

    r = sync_once(store, url_a, headers=token_headers, allow_insecure_http=True)  # loopback: a lab

    assert (r.status, r.reason, r.installed) == ("refused", "cross_origin_redirect", 1), r
    assert url_b.rstrip("/") in r.message and "gallery.sync_url" in r.message
    assert seen_a.authorizations, "the configured server gets the token"
    assert seen_b.requests == [], "the other origin was not even contacted"
    _answers_v1(store, content)  # the installed gallery keeps answering


def test_redirect_to_another_host_name_is_another_origin(tmp_path, signer, make_store, http_server, token_headers):
    store, content, _, url_b, seen_b = _installed_v1(tmp_path, signer, make_store, http_server)
    # B's port under another name (localhost, not 127.0.0.1): another origin, even if it is the same machine
    url_a, _ = http_server(redirect_to(url_b.replace("127.0.0.1", "localhost"), code="307 Temporary Redirect"))
    r = sync_once(store, url_a, headers=token_headers, allow_insecure_http=True)
    assert (r.status, r.reason) == ("refused", "cross_origin_redirect")
    assert seen_b.authorizations == []
    _answers_v1(store, content)


def test_same_origin_redirect_keeps_the_token(tmp_path, signer, make_store, http_server, token_headers):
    content = Content(200, seed=12)
    pub = tmp_path / "pub"
    content.publish(pub, signer)
    inner = needs_token(GalleryFiles(pub))

    def moved(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/old/"):
            start_response(
                "301 Moved Permanently", [("Location", "/new/" + path[len("/old/") :]), ("Content-Length", "0")]
            )
            return []
        if path.startswith("/new/"):
            return inner({**environ, "PATH_INFO": path[len("/new") :]}, start_response)
        start_response("404 Not Found", [("Content-Length", "0")])
        return []

    url, seen = http_server(moved)
    store = make_store()
    r = sync_once(store, url + "old/", headers=token_headers, allow_insecure_http=True)
    assert (r.status, r.installed) == ("updated", 1), r
    followed = [(p, a) for p, a in seen.requests if p.startswith("/new/")]
    assert followed and all(a is not None for _, a in followed)


def test_plain_http_with_credentials_is_refused_unless_the_lab_setting_is_on(
    tmp_path, signer, make_store, http_server, token_headers
):
    content = Content(200, seed=13)
    pub = tmp_path / "pub"
    content.publish(pub, signer)
    url, seen = http_server(needs_token(GalleryFiles(pub)))
    store = make_store()

    r = sync_once(store, url, headers=token_headers)
    assert (r.status, r.reason, r.installed) == ("refused", "insecure_http", 0), r
    assert "https://" in r.message and "gallery.allow_insecure_http" in r.message  # what is wrong, what to do
    assert seen.requests == [], "nothing was sent"

    r = sync_once(store, url, headers=token_headers, allow_insecure_http=True)
    assert (r.status, r.installed) == ("updated", 1)
    assert seen.authorizations


def test_plain_http_without_credentials_and_credentials_in_the_url(tmp_path, signer, make_store, http_server):
    content = Content(200, seed=14)
    pub = tmp_path / "pub"
    content.publish(pub, signer)
    url, seen = http_server(GalleryFiles(pub))
    store = make_store()
    assert sync_once(store, url).status == "updated"  # nothing secret to send: a plain mirror is fine
    with_userinfo = url.replace("http://", "http://unit-1:" + TOKEN + "@")
    r = sync_once(store, with_userinfo, allow_insecure_http=True)
    assert (r.status, r.reason) == ("refused", "credentials_in_url")
    assert TOKEN not in r.message and "gallery.sync_password_file" in r.message


def test_announcement_driven_sync_takes_the_same_path(tmp_path, signer, make_store, http_server, token_headers):
    """The daemon hands the retained announcement to Syncer.trigger; its url is never asked, and the sync it
    wakes is the same sync_once with the same checks (here: the configured server redirects elsewhere)."""
    from edgeface.mqtt.payloads import announce_payload

    store, content, pub, url_b, seen_b = _installed_v1(tmp_path, signer, make_store, http_server)
    url_a, seen_a = http_server(redirect_to(url_b))
    syncer = Syncer(store, url_a, headers=token_headers, allow_insecure_http=True)
    doc = json.dumps(announce_payload(gallery_version=2, url=url_b, model_id="m")).encode()
    assert syncer.trigger(doc) is True  # newer than installed: a sync is requested ...
    r = syncer.run_once()  # ... which is what the loop runs when woken
    assert (r.status, r.reason, r.installed) == ("refused", "cross_origin_redirect", 1)
    assert seen_a.authorizations and seen_b.requests == []
    _answers_v1(store, content)

    # credentials over plain http without the lab setting: the daemon's Syncer refuses like the CLI
    syncer = Syncer(store, url_b, headers=token_headers)
    assert syncer.trigger(doc) is True
    r = syncer.run_once()
    assert (r.status, r.reason) == ("refused", "insecure_http") and seen_b.requests == []


def test_gallery_sync_command_applies_the_lab_setting(tmp_path, http_server):
    """`edgeface gallery sync` as an operator runs it: refused with what to do (exit 1), accepted with
    gallery.allow_insecure_http = true, and a wrong value for the setting is a usage error naming it."""
    card = find_card(Config().models.embedder, task="embedder")  # the unit's default embedder
    signing.generate_keypair(tmp_path / "central.pem", tmp_path / "central.pub")
    pub = tmp_path / "pub"
    Content(100, seed=15).publish(
        pub, signing.load_private_key(tmp_path / "central.pem"), embedder=EmbedderRef(card.id, card.sha256, 128)
    )
    url, seen = http_server(needs_token(GalleryFiles(pub)))
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    os.chmod(token, 0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFACE_")}
    env.update(
        EDGEFACE_GALLERY__DIR=str(tmp_path / "unit"),
        EDGEFACE_GALLERY__ENCRYPT="false",
        EDGEFACE_GALLERY__TRUSTED_KEYS=f'["{tmp_path / "central.pub"}"]',
        EDGEFACE_DEVICE__ID="unit-1",
        EDGEFACE_GALLERY__SYNC_PASSWORD_FILE=str(token),
    )

    def sync(*sets: str) -> subprocess.CompletedProcess[str]:
        args = [a for s in sets for a in ("--set", s)]
        return subprocess.run(
            [sys.executable, "-m", "edgeface", *args, "gallery", "sync", "--url", url],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    p = sync()
    assert p.returncode == 1 and "refused" in p.stdout and "gallery.allow_insecure_http" in p.stdout, p.stdout
    assert seen.requests == []
    p = sync("gallery.allow_insecure_http=maybe")
    assert p.returncode == 2 and "gallery.allow_insecure_http" in p.stderr, p.stderr
    p = sync("gallery.allow_insecure_http=true")
    assert p.returncode == 0 and p.stdout.startswith("updated"), p.stdout + p.stderr
    assert seen.authorizations
