from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Integer, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.tables.base import Base, now_s


class JobRound(Base):
    """One merged round. The unique (job_id, round) pair fences duplicate merges."""

    __tablename__ = "job_rounds"
    __table_args__ = (UniqueConstraint("job_id", "round", name="uq_job_rounds_job_round"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    round: Mapped[int] = mapped_column(Integer)
    train_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    val_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    val_metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    shards: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    excluded_shards: Mapped[list[int]] = mapped_column(JSON, default=list)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    slowest_shard_seconds: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_s)
