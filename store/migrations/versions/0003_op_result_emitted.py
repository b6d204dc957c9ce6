"""channel_ops.result_emitted: the op's final result reached sync.results (results outbox)

An op's outcome is committed before its result is produced; a crash in between used to lose
the result. The dispatcher now marks the op once the result is acknowledged by the broker and
re-sends the results of final ops left unmarked. Ops already final when this runs are taken as
reported.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("channel_ops") as batch:
        batch.add_column(
            sa.Column("result_emitted", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.create_index("ix_channel_ops_result_emitted", ["result_emitted", "state"])
    op.execute(
        "UPDATE channel_ops SET result_emitted = true WHERE state IN ('succeeded', 'failed')"
    )


def downgrade() -> None:
    with op.batch_alter_table("channel_ops") as batch:
        batch.drop_index("ix_channel_ops_result_emitted")
        batch.drop_column("result_emitted")
