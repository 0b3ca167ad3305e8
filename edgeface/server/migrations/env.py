"""Alembic environment: migrations run on the connection the server hands over (see db.Database.migrate),
or, for ``alembic`` on the command line, on ``sqlalchemy.url``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from edgeface.server.tables import metadata

config = context.config
connection = config.attributes.get("connection")


def _run(conn: Connection) -> None:
    context.configure(connection=conn, target_metadata=metadata, render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    _run(connection)
else:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("alembic: pass a connection (Database.migrate does) or set sqlalchemy.url")
    with create_engine(url).begin() as conn:
        _run(conn)
