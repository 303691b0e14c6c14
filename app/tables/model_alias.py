from sqlalchemy import BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.tables.base import Base, new_id, now_s


class ModelAlias(Base):
    """A movable name for one version of a named model: `champion` (moved by the champion
    gate, or by hand), or one a user sets, such as `staging`. Changed only while the
    model name's row is locked, so the gate and a user never interleave."""

    __tablename__ = "model_aliases"
    __table_args__ = (UniqueConstraint("tenant_id", "model_name", "alias"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True, default=lambda: new_id("mal"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    model_name: Mapped[str] = mapped_column(String(64))
    alias: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    # Denormalised from (model_name, version), which never changes: predict by alias
    # resolves in one read.
    model_id: Mapped[str] = mapped_column(String(40))
    set_by: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    updated_at: Mapped[int] = mapped_column(BigInteger, default=now_s)


class ModelAliasChange(Base):
    """The audit trail of every alias move: who (an API key's id, or the job whose
    champion gate decided), from which version to which, and why."""

    __tablename__ = "model_alias_changes"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True, default=lambda: new_id("mac"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    model_name: Mapped[str] = mapped_column(String(64), index=True)
    alias: Mapped[str] = mapped_column(String(64))
    from_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    to_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    set_by: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_s)
