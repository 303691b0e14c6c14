from sqlalchemy import JSON, BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.tables.base import Base, new_id, now_s


class Tenant(Base):
    """An account: every dataset, job and model belongs to exactly one."""

    __tablename__ = "tenants"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True, default=lambda: new_id("ten"))
    name: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_s)
    # Overrides of the quota and rate-limit defaults, e.g. {"max_running_jobs": 2}.
    limits: Mapped[dict[str, int] | None] = mapped_column(JSON, nullable=True)
