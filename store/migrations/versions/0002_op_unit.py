"""channel_ops.unit_id: find a unit's dispatch without scanning payloads

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
    with op.batch_alter_table("channel_ops") as batch:
        batch.add_column(sa.Column("unit_id", sa.String(length=128), nullable=True))
        batch.create_index("ix_channel_ops_unit_id", ["unit_id"])


def downgrade() -> None:
    with op.batch_alter_table("channel_ops") as batch:
        batch.drop_index("ix_channel_ops_unit_id")
        batch.drop_column("unit_id")
