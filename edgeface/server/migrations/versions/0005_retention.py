"""retention: results.crop_purged_at, case_closures

``edgeface server purge`` removes a result's face crop before the result itself when
``server.retention.crops_days`` says so; ``crop_purged_at`` records when (the payload stays as the unit
sent it, less the crop). ``case_closures`` lists the cases a person closed: retention keeps an open
case's results whole. Existing rows: no crop purged, every case open.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.add_column(sa.Column("crop_purged_at", sa.Float(), nullable=True))
    op.create_table(
        "case_closures",
        sa.Column("tag", sa.String(length=128), nullable=False),
        sa.Column("closed_at", sa.Float(), nullable=False),
        sa.Column("closed_by", sa.String(length=64), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("tag"),
    )


def downgrade() -> None:
    op.drop_table("case_closures")
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.drop_column("crop_purged_at")
