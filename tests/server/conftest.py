"""Fixtures for the central server tests: a configured app on a temporary SQLite database, users of
each role with logged-in test clients, results as the ingest stores them, real brokers."""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from edgeface.config import Config, load_config
from edgeface.server import audit, auth
from edgeface.server.app import create_app
from edgeface.server.db import Database
from edgeface.server.ingest import DbResultStore
from edgeface.testing.mqttload import sample_result

PASSWORD = "correct horse battery staple"
PUBLIC_URL = "https://central.example/edge"  # server.public_url of the test servers
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


@contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """The app over real HTTP on a loopback port, served by threads of this process (for the browser tests)."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        t.join(10)


def server_config(tmp: Path, **sets: Any) -> Config:
    pairs = {
        "server.database_url": f"sqlite:///{tmp / 'server.sqlite3'}",
        "server.data_dir": str(tmp / "data"),
        "server.signing_key": str(tmp / "keys" / "signing.pem"),
        "server.cookie_secure": "false",
        "server.ingest_workers": "0",
        "server.public_url": PUBLIC_URL,
        "mqtt.host": "",
        **{k: str(v) for k, v in sets.items()},
    }
    return load_config(None, env={}, overrides=[f"{k}={v}" for k, v in pairs.items()])


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return server_config(tmp_path)


@pytest.fixture
def db(config: Config) -> Iterator[Database]:
    d = Database(config.server.database_url)
    d.migrate()
    yield d
    d.dispose()


@pytest.fixture
def app(config: Config, db: Database) -> Any:
    a = create_app(config, db=db, migrate=False)
    a.testing = True
    return a


def make_user(db: Database, name: str, *roles: str) -> auth.User:
    with db.write() as conn:
        return auth.create_user(conn, name, PASSWORD, list(roles))


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF token in the page"
    return m.group(1)


class Browser:
    """A Flask test client that logs in like a person and keeps the page's CSRF token."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.client = app.test_client()
        self.csrf = ""

    def login(self, username: str, password: str = PASSWORD) -> Any:
        page = self.client.get("/login")
        r = self.client.post(
            "/login",
            data={"username": username, "password": password, "csrf_token": csrf_of(page.get_data(as_text=True))},
        )
        if r.status_code == 302:
            self.csrf = csrf_of(self.client.get("/fleet", headers={"Accept": "text/html"}).get_data(as_text=True))
        return r

    def post(self, url: str, data: dict[str, Any] | None = None, **kw: Any) -> Any:
        return self.client.post(url, data={"csrf_token": self.csrf, **(data or {})}, **kw)

    def get(self, url: str, **kw: Any) -> Any:
        return self.client.get(url, **kw)


@pytest.fixture
def users(db: Database) -> dict[str, auth.User]:
    return {
        "reviewer": make_user(db, "rita", "reviewer"),
        "reviewer2": make_user(db, "rob", "reviewer"),
        "admin": make_user(db, "ada", "admin"),
    }


@pytest.fixture
def as_reviewer(app: Any, users: dict[str, auth.User]) -> Browser:
    b = Browser(app)
    assert b.login("rita").status_code == 302
    return b


@pytest.fixture
def as_reviewer2(app: Any, users: dict[str, auth.User]) -> Browser:
    b = Browser(app)
    assert b.login("rob").status_code == 302
    return b


@pytest.fixture
def as_admin(app: Any, users: dict[str, auth.User]) -> Browser:
    b = Browser(app)
    assert b.login("ada").status_code == 302
    return b


def add_results(db: Database, n: int, *, device: str = "unit-a", seed: int = 1, **kw: Any) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    docs = [sample_result(device, rng, **kw) for _ in range(n)]
    DbResultStore(db).add(docs)
    return docs


__all__ = [
    "ARTIFACTS",
    "PASSWORD",
    "PUBLIC_URL",
    "Browser",
    "add_results",
    "audit",
    "csrf_of",
    "make_user",
    "server_config",
]
