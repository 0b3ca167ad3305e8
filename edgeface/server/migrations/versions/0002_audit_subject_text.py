"""audit_log.subject as TEXT: what is hashed is exactly what is stored

Entries were hashed over the full subject but the column (and the insert) kept 256 characters, so a
longer subject verified as "edited". The subject is now stored whole. Existing rows are copied
unchanged, so every chain that verified before still verifies.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.alter_column("subject", existing_type=sa.String(length=256), type_=sa.Text(), existing_nullable=False)


def downgrade() -> None:
    # Narrowing would cut long subjects and break their hashes: refuse rather than damage the chain.
    raise RuntimeError("audit_log.subject cannot be narrowed back to 256 characters without breaking the chain")
