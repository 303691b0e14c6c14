from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.tables.base import Base, new_id, now_s
from app.tables.statuses import JobStatus


class Job(Base):
    __tablename__ = "jobs"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True, default=lambda: new_id("job"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    task: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # Written by the prepare task: feature layout, shard sizes and blob keys.
    plan: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    current_round: Mapped[int] = mapped_column(Integer, default=0)
    rounds: Mapped[int] = mapped_column(Integer)
    best_round: Mapped[int | None] = mapped_column(Integer, nullable=True)
    best_val_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    model_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    # The spec's init_from, resolved when the job was created: the model it starts from.
    init_model_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    # The stage's first attempt number since the job was last resumed: a resumed stage
    # is sent with new task ids (cancel revoked the old ones) and a full retry budget.
    attempt_base: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # A job trained on another job's prepared shards (a sweep's trials share them).
    shards_from: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    # A sweep's trial: its sweep, and the trial's number there.
    sweep_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    sweep_trial: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_s)
    # Optimistic locking: every UPDATE checks the version it read. SQLite ignores
    # SELECT … FOR UPDATE, so without this a worker could overwrite a cancel it never saw.
    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012
    started_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    finished_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # When the stage now awaited was sent (a round's shards, or finalize): the watchdog
    # measures stalls from here, and the round's wall time is counted from here.
    stage: Mapped[str | None] = mapped_column(String(16), nullable=True)  # prepare|round|finalize
    stage_started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Times the watchdog has re-sent the current stage.
    stage_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
