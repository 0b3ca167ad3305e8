"""What the request handlers share in one process: configuration, database, the face engine (loaded
on first use, one enrollment at a time: a TFLite interpreter serves one thread), folders."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config
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
            from ..engine import Engine

            self._engine = Engine(self.config)
        return self._engine

    def public_url(self, fallback: str) -> str:
        return (self.config.server.public_url or fallback).rstrip("/")
