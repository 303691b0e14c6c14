"""model_names, models.model_name and models.version: named models whose succeeded
jobs add versions 1, 2, ...

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "model_names",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_model_names_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_model_names")),
        sa.UniqueConstraint("id", name=op.f("uq_model_names_id")),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_model_names_tenant_id")),
    )
    op.create_index(
        op.f("ix_model_names_tenant_id"), "model_names", ["tenant_id"], unique=False
    )
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.add_column(sa.Column("model_name", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("version", sa.Integer(), nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f("uq_models_tenant_id"), ["tenant_id", "model_name", "version"]
        )


def downgrade() -> None:
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_models_tenant_id"), type_="unique")
        batch_op.drop_column("version")
        batch_op.drop_column("model_name")
    op.drop_index(op.f("ix_model_names_tenant_id"), table_name="model_names")
    op.drop_table("model_names")
