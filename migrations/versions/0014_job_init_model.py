"""jobs.init_model_id: the model a warm-started job (`init_from`) starts from,
resolved when the job is created; jobs.attempt_base: where a resumed stage's attempts
start (`POST /v1/jobs/{id}/resume`); jobs.shards_from: the job whose prepared shards
a job trains on (a sweep's trials share one preparation).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 11:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("init_model_id", sa.String(length=40), nullable=True))
        batch_op.add_column(
            sa.Column("attempt_base", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("shards_from", sa.String(length=40), nullable=True))
        batch_op.create_index(batch_op.f("ix_jobs_shards_from"), ["shards_from"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_shards_from"))
        batch_op.drop_column("shards_from")
        batch_op.drop_column("attempt_base")
        batch_op.drop_column("init_model_id")
