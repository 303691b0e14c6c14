"""model_aliases, model_alias_changes and models.comparison: aliases of named model
versions (`champion`, set by the champion gate, and a user's own), their audit trail,
and the champion gate's head-to-head comparison on the model.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 11:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "model_aliases",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("model_name", sa.String(length=64), nullable=False),
        sa.Column("alias", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.String(length=40), nullable=False),
        sa.Column("set_by", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=1000), nullable=True),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_model_aliases_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_model_aliases")),
        sa.UniqueConstraint("id", name=op.f("uq_model_aliases_id")),
        sa.UniqueConstraint(
            "tenant_id", "model_name", "alias", name=op.f("uq_model_aliases_tenant_id")
        ),
    )
    op.create_index(
        op.f("ix_model_aliases_tenant_id"), "model_aliases", ["tenant_id"], unique=False
    )
    op.create_table(
        "model_alias_changes",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("model_name", sa.String(length=64), nullable=False),
        sa.Column("alias", sa.String(length=64), nullable=False),
        sa.Column("from_version", sa.Integer(), nullable=True),
        sa.Column("to_version", sa.Integer(), nullable=True),
        sa.Column("set_by", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=1000), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_model_alias_changes_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_model_alias_changes")),
        sa.UniqueConstraint("id", name=op.f("uq_model_alias_changes_id")),
    )
    op.create_index(
        op.f("ix_model_alias_changes_tenant_id"),
        "model_alias_changes",
        ["tenant_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_model_alias_changes_model_name"),
        "model_alias_changes",
        ["model_name"],
        unique=False,
    )
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.add_column(sa.Column("comparison", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.drop_column("comparison")
    op.drop_index(op.f("ix_model_alias_changes_model_name"), table_name="model_alias_changes")
    op.drop_index(op.f("ix_model_alias_changes_tenant_id"), table_name="model_alias_changes")
    op.drop_table("model_alias_changes")
    op.drop_index(op.f("ix_model_aliases_tenant_id"), table_name="model_aliases")
    op.drop_table("model_aliases")
