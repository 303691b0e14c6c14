from sqlalchemy import BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.tables.base import Base, new_id, now_s


class ModelName(Base):
    """A name a tenant's jobs train versions under (`model_name` in the job spec).
    The row is locked while a version is numbered, so that jobs finishing at the same
    moment get consecutive numbers and never the same one."""

    __tablename__ = "model_names"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True, default=lambda: new_id("mnm"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    latest_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_s)
    updated_at: Mapped[int] = mapped_column(BigInteger, default=now_s)
