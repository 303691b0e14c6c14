"""outbox messages; watchdog stages on datasets and batch predictions

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 22:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('outbox_messages',
    sa.Column('seq', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('args', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_outbox_messages'))
    )
    for table in ('datasets', 'batch_predictions'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('stage_started_at', sa.Float(), nullable=True))
            batch_op.add_column(
                sa.Column('stage_attempts', sa.Integer(), server_default='0', nullable=False)
            )
    # Rows already waiting are watched from their creation, as new ones are.
    op.execute("UPDATE datasets SET stage_started_at = created_at WHERE status = 'processing'")
    op.execute(
        "UPDATE batch_predictions SET stage_started_at = created_at "
        "WHERE status IN ('queued', 'running')"
    )


def downgrade() -> None:
    for table in ('batch_predictions', 'datasets'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('stage_attempts')
            batch_op.drop_column('stage_started_at')
    op.drop_table('outbox_messages')
