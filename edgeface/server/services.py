"""What the request handlers share in one process: configuration, database, the face engine (loaded
on first use, one enrollment at a time: a TFLite interpreter serves one thread), folders."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..config import Config
from ..errors import ConfigError
from .db import Database


@dataclass
class Services:
    config: Config
    db: Database
    _engine: Any = None
    engine_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def data_dir(self) -> Path:
        return Path(self.config.server.data_dir)

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def workspace_dir(self) -> Path:
        return self.data_dir / "enrollment"

    @property
    def publish_dir(self) -> Path:
        return self.data_dir / "publish"

    def engine(self) -> Any:
        """The face engine (call with ``engine_lock`` held)."""
        if self._engine is None:
            from ..vision.engine import Engine

            self._engine = Engine(self.config)
        return self._engine

    def bundles_url(self) -> str:
        """Where units download published bundles: ``<server.public_url>/bundles/`` (see :func:`bundles_url`)."""
        return bundles_url(self.config)


def bundles_url(config: Config) -> str:
    """``<server.public_url>/bundles/``, the URL the retained gallery announcement carries.

    Only the configured URL is used, never the Host header of the request that publishes: a header
    anyone can set must not end up in a retained message every unit reads. Raises ConfigError when the
    setting is empty or not an http(s) base URL.
    """
    raw = config.server.public_url.strip()
    if not raw:
        raise ConfigError(
            "server.public_url is not set: a gallery cannot be published without the address units download "
            "it from. Set server.public_url to the URL units reach this server at (e.g. "
            "https://edgeface.example.org) in the [server] section or with --set server.public_url=..."
        )
    parts = urlsplit(raw)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or parts.username
        or parts.password
    ):
        raise ConfigError(
            f"server.public_url = {raw!r} is not a base URL: give scheme and host, e.g. https://edgeface.example.org "
            "(no user name, query or fragment)"
        )
    return raw.rstrip("/") + "/bundles/"


def services() -> Services:
    """The running app's :class:`Services` (inside a request or an app context)."""
    from flask import current_app

    found: Services = current_app.extensions["edgeface"]
    return found
