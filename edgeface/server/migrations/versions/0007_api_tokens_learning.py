"""api_tokens, identities.status, images.result_id: the JSON API's bearer tokens, and learning from review

- ``api_tokens``: a user's bearer tokens for ``/api/v1`` (only the SHA-256 of the token is kept, as for
  sessions); a token acts with its user's roles, narrowed to ``roles`` when that is not empty.
- ``identities.status``: ``enrolled`` for every existing identity; ``pending`` for a "new person" a reviewer
  confirmed that has no enrolled image yet.
- ``images.result_id``: the result whose probe was added to the person's gallery images after a confirmation
  (provenance beside ``source``, which names the reviewers and the time).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("roles", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=True),
        sa.Column("last_used_at", sa.Float(), nullable=True),
        sa.Column("revoked_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )
    with op.batch_alter_table("identities") as batch:
        batch.add_column(sa.Column("status", sa.String(length=16), nullable=False, server_default="enrolled"))
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("result_id", sa.String(length=36), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.drop_column("result_id")
    with op.batch_alter_table("identities") as batch:
        batch.drop_column("status")
    op.drop_table("api_tokens")
