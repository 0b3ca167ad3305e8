"""publication_bundles: each embedder's bundle of a publication

A publication now builds one signed bundle per embedder the fleet runs (``server.embedders``). The
``publications`` row stays as it was (the first embedder's figures); each bundle gets a row here.
Publications made before this revision have none: they were single-embedder, recorded in their row.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "publication_bundles",
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("embedder_id", sa.String(length=128), nullable=False),
        sa.Column("embedder_sha256", sa.String(length=64), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("identities", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.Integer(), nullable=False),
        sa.Column("manifest_sha256", sa.String(length=64), nullable=False),
        sa.Column("embedded", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["version"], ["publications.version"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("version", "embedder_id"),
    )


def downgrade() -> None:
    op.drop_table("publication_bundles")
