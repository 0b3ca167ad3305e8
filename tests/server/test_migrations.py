"""Schema migrations, on SQLite and on a throwaway PostgreSQL cluster: the migrated schema is the one
the code declares, a second run changes nothing, and ingest, reviews and the audit chain work on both."""

from __future__ import annotations

import os
import pwd
import random
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from edgeface.server import audit, auth
from edgeface.server.db import MIGRATIONS, Database
from edgeface.server.ingest import DbResultStore
from edgeface.server.review import decide
from edgeface.server.tables import metadata
from edgeface.testing.broker import free_port
from edgeface.testing.mqttload import sample_result

from .conftest import PASSWORD

PG_BIN = Path("/usr/lib/postgresql")


def _pg_bin() -> Path | None:
    found = sorted(PG_BIN.glob("*/bin/initdb")) if PG_BIN.exists() else []
    return found[-1].parent if found else (Path(shutil.which("initdb")).parent if shutil.which("initdb") else None)


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A PostgreSQL server on a free loopback port in a temporary folder (as user postgres when root)."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.fail("PostgreSQL is not installed (apt-get install postgresql; .ci/run installs it)")
    root = Path(tempfile.mkdtemp(prefix="edgeface-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    data = root / "data"
    subprocess.run(
        [
            *as_user,
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *as_user,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(root / "log"),
            "-w",
            "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(root, ignore_errors=True)


def head_revision() -> str:
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return str(ScriptDirectory.from_config(cfg).get_current_head())


def _schema_differences(db: Database) -> list[object]:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with db.engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata))


def _exercise(db: Database) -> None:
    head = head_revision()
    assert db.migrate() == head
    assert db.migrate() == head  # idempotent
    assert set(inspect(db.engine).get_table_names()) == set(metadata.tables) | {"alembic_version"}
    assert _schema_differences(db) == []  # the migrations create exactly what tables.py declares
    with db.write() as conn:
        rita = auth.create_user(conn, "rita", PASSWORD, ["reviewer"])
    rng = random.Random(4)
    docs = [sample_result("unit-a", rng, match_share=1.0) for _ in range(50)]
    store = DbResultStore(db)
    assert store.add(docs) == (50, 0)
    assert store.add(docs[:10] + [sample_result("unit-b", rng)]) == (1, 10)
    store.set_status({"schema_version": 1, "device_id": "unit-a", "state": "online", "ts": "2025-01-01T00:00:00Z"})
    with db.write() as conn:
        decide(conn, docs[0]["id"], rita, "confirm", None, "ok", two_person=False)

    def appender(k: int) -> None:  # several writers: one chain
        for i in range(10):
            with db.write() as conn:
                audit.append(conn, f"t{k}", "review.unknown", f"{k}-{i}", {})

    threads = [threading.Thread(target=appender, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with db.write() as conn:  # a subject longer than the old 256-character column is stored as hashed
        audit.append(conn, "t", "review.unknown", "s" * 1000, {})
    with db.read() as conn:
        v = audit.verify(conn)
        assert v.ok and v.entries == 42, v.problems
        assert conn.execute(text("SELECT count(*) FROM results")).scalar_one() == 51


def test_sqlite(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 's.sqlite3'}")
    try:
        _exercise(db)
        with db.read() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        # positive control: the comparison sees a schema that drifted from tables.py (an index dropped,
        # a column added), so its empty answer above means the schemas agree
        with db.write() as conn:
            conn.exec_driver_sql("DROP INDEX results_queue")
            conn.exec_driver_sql("ALTER TABLE results ADD COLUMN stray TEXT")
        found = repr(_schema_differences(db))
        assert "results_queue" in found and "stray" in found, found
    finally:
        db.dispose()


def test_postgresql(postgres: str) -> None:
    db = Database(postgres)
    try:
        _exercise(db)
    finally:
        db.dispose()


def test_bad_database_url() -> None:
    from edgeface.errors import ConfigError

    for url in ("not a url", "mysql://x/y"):
        with pytest.raises(ConfigError):
            Database(url)


def test_server_config_defaults_documented() -> None:
    from edgeface.config import Config, to_toml

    text_ = to_toml(Config())
    assert "[server]" in text_ and "database_url" in text_ and "sync_password_file" in text_


def _upgrade_keeps_the_chain(db: Database) -> None:
    """A chain written under the first schema still verifies after every later migration."""
    assert db.migrate("0001") == "0001"
    with db.write() as conn:
        for i in range(5):
            audit.append(conn, "ada", "review.confirm", f"r{i}" * 40, {"i": i})  # up to 120 characters
    db.migrate()
    with db.read() as conn:
        v = audit.verify(conn)
    assert v.ok and v.entries == 5, v.problems
    assert _schema_differences(db) == []


def test_upgrade_keeps_the_audit_chain_sqlite(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'u.sqlite3'}")
    try:
        _upgrade_keeps_the_chain(db)
    finally:
        db.dispose()


def test_upgrade_keeps_the_audit_chain_postgresql(postgres: str) -> None:
    db = Database(postgres)
    try:
        with db.write() as conn:  # the module's cluster is shared: start from an empty schema
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        _upgrade_keeps_the_chain(db)
    finally:
        db.dispose()
