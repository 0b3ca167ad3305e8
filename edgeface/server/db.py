"""The database: one SQLAlchemy engine per process, write and read transactions, migrations.

SQLite (the default, one host): WAL, ``synchronous=FULL`` (an acknowledged result survives a power
cut), foreign keys on, and every write transaction starts with ``BEGIN IMMEDIATE``, so two processes
(web and ingest workers) queue for the write lock instead of failing half-way with "database is
locked". Reads use plain deferred transactions and never block writers (WAL).

PostgreSQL (several hosts): ``postgresql+psycopg://...``; migrations take an advisory lock so several
servers starting at once migrate once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from ..errors import ConfigError
from ..logs import get_logger

log = get_logger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
_READ = "edgeface_read"


class Database:
    """The engine plus the two kinds of transaction the server uses."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        try:
            parsed = make_url(url)
        except ArgumentError as e:
            raise ConfigError(
                f"server.database_url = {url!r} is not a database URL ({e}); use "
                "sqlite:////var/lib/edgeface/server.sqlite3 or postgresql+psycopg://user@host/db"
            ) from None
        self.url = parsed
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if self.is_sqlite:
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(
                parsed, echo=echo, connect_args={"timeout": 60, "check_same_thread": False}
            )
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", _sqlite_begin)
        elif parsed.get_backend_name() == "postgresql":
            self.engine = create_engine(parsed, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=10)
        else:
            raise ConfigError(
                f"server.database_url: backend {parsed.get_backend_name()!r} is not supported; "
                "use sqlite or postgresql+psycopg"
            )
        self._reader = self.engine.execution_options(**{_READ: True})

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction that may write; commits on success, rolls back on any exception."""
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only snapshot (never blocks or waits for writers)."""
        with self._reader.connect() as conn:
            yield conn
            conn.rollback()

    def migrate(self, revision: str = "head") -> str:
        """Bring the schema to the newest migration (or ``revision``); returns the revision now in force."""
        from alembic import command
        from alembic.config import Config as AlembicConfig
        from alembic.runtime.migration import MigrationContext

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.write() as conn:
            if not self.is_sqlite:  # SQLite's BEGIN IMMEDIATE already serialises concurrent migrations
                conn.execute(text("SELECT pg_advisory_xact_lock(7264531)"))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            rev = MigrationContext.configure(conn).get_current_revision()
        log.info("server.db.migrated", revision=rev, backend=self.url.get_backend_name())
        return str(rev)

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # transactions are begun by _sqlite_begin, not by the driver
    cur = dbapi_conn.cursor()
    for pragma in ("journal_mode = WAL", "synchronous = FULL", "foreign_keys = ON", "busy_timeout = 60000"):
        cur.execute(f"PRAGMA {pragma}")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(_READ) else "BEGIN IMMEDIATE")
