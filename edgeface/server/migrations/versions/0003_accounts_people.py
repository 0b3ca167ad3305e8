"""accounts belong to people: owner, created_by, password_set_by; role requests approved by a second admin

The two-person rule is about people, not accounts. Existing accounts get sensible values:
``owner`` = the user name (each account its own person, as before), ``created_by`` from the audit log's
``user.create`` entries made by a user on the web (the command line's stay NULL), and
``password_set_by`` from the newest such creation or administrator password reset (before this
revision no one could set their own password on the web, so an administrator who set it still knows it).
Existing roles stay granted; new grants go through ``role_requests``.

SQLite: columns are added with ALTER TABLE (no table rebuild, which would cascade into sessions and
reviews); ``owner`` keeps a default of '' there, which nothing relies on.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("owner", sa.String(length=64), nullable=False, server_default=""))
    if op.get_bind().dialect.name == "sqlite":  # references inline: SQLite cannot add a constraint later
        op.execute("ALTER TABLE users ADD COLUMN created_by INTEGER REFERENCES users (id)")
        op.execute("ALTER TABLE users ADD COLUMN password_set_by INTEGER REFERENCES users (id)")
    else:
        op.add_column("users", sa.Column("created_by", sa.Integer(), sa.ForeignKey("users.id"), nullable=True))
        op.add_column("users", sa.Column("password_set_by", sa.Integer(), sa.ForeignKey("users.id"), nullable=True))
        op.alter_column("users", "owner", server_default=None)
    op.create_table(
        "role_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("roles", sa.String(length=64), nullable=False),
        sa.Column("requested_by", sa.Integer(), nullable=False),
        sa.Column("requested_at", sa.Float(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("decided_by", sa.Integer(), nullable=True),
        sa.Column("decided_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["requested_by"], ["users.id"]),
        sa.ForeignKeyConstraint(["decided_by"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("role_requests_state", "role_requests", ["state", "user_id"], unique=False)
    _backfill()


def _backfill() -> None:
    conn = op.get_bind()
    users = sa.table(
        "users",
        sa.column("id", sa.Integer),
        sa.column("username", sa.String),
        sa.column("owner", sa.String),
        sa.column("created_by", sa.Integer),
        sa.column("password_set_by", sa.Integer),
    )
    audit = sa.table(
        "audit_log",
        sa.column("seq", sa.Integer),
        sa.column("actor", sa.String),
        sa.column("action", sa.String),
        sa.column("subject", sa.Text),
        sa.column("details", sa.Text),
    )
    conn.execute(users.update().values(owner=users.c.username))
    ids = {name: uid for uid, name in conn.execute(sa.select(users.c.id, users.c.username))}
    created_by: dict[int, int] = {}
    password_set_by: dict[int, int] = {}
    for actor, action, subject, details in conn.execute(
        sa.select(audit.c.actor, audit.c.action, audit.c.subject, audit.c.details)
        .where(audit.c.action.in_(("user.create", "user.update")))
        .order_by(audit.c.seq)
    ):
        target, by = ids.get(subject), ids.get(actor)
        if target is None or by is None or target == by:
            continue
        if action == "user.create":
            created_by.setdefault(target, by)
            password_set_by[target] = by
        elif _password_reset(details):
            password_set_by[target] = by
    for target, by in created_by.items():
        conn.execute(users.update().where(users.c.id == target).values(created_by=by))
    for target, by in password_set_by.items():
        conn.execute(users.update().where(users.c.id == target).values(password_set_by=by))


def _password_reset(details: str) -> bool:
    try:
        return bool(json.loads(details).get("password_reset"))
    except (ValueError, AttributeError):
        return False


def downgrade() -> None:
    op.drop_index("role_requests_state", table_name="role_requests")
    op.drop_table("role_requests")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("password_set_by")
        batch_op.drop_column("created_by")
        batch_op.drop_column("owner")
