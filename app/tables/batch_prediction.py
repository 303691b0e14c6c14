from sqlalchemy import BigInteger, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.tables.base import Base, new_id, now_s
from app.tables.statuses import BatchStatus


class BatchPrediction(Base):
    """A model run over a whole dataset by a worker, its output a Parquet blob."""

    __tablename__ = "batch_predictions"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True, default=lambda: new_id("bp"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id"), index=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"))
    status: Mapped[str] = mapped_column(String(16), default=BatchStatus.QUEUED)
    rows: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    output_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_s)
    finished_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # As on datasets: when the run was last sent, and how often the watchdog re-sent it.
    stage_started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    stage_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
