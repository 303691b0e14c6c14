from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.tables.base import Base, new_id, now_s


class Sweep(Base):
    """A hyperparameter search: trials are jobs on one preparation of the data, asked
    for one at a time by the sweep's step (`app.sweeps.step`), which alone changes the
    sweep and its trials, under this row's lock."""

    __tablename__ = "sweeps"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True, default=lambda: new_id("swp"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    # classification or regression, resolved from the template when the sweep was made.
    task: Mapped[str] = mapped_column(String(16))
    # The request as accepted (`SweepSpec`), and the direction it resolved to.
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    maximize: Mapped[bool] = mapped_column(default=True)
    # Trials at once: what the sweep holds of the tenant's `max_running_jobs`.
    parallelism: Mapped[int] = mapped_column(Integer)
    best_trial: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The job that trains the best trial's settings for delivery (through the gate,
    # under the model name; on all folds' rows after a cross-validation), if one is needed.
    final_job_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    model_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_s)
    finished_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # When a step last ran: the watchdog steps a sweep that has not moved for a while.
    stepped_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012


class SweepTrial(Base):
    """One set of values a sweep tried: its job (one per fold with cross-validation),
    how it went, its score and, for the pruners, its validation loss per round."""

    __tablename__ = "sweep_trials"
    __table_args__ = (UniqueConstraint("sweep_id", "number"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sweep_id: Mapped[str] = mapped_column(ForeignKey("sweeps.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))
    job_ids: Mapped[list[str]] = mapped_column(JSON)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    score_std: Mapped[float | None] = mapped_column(Float, nullable=True)
    fold_scores: Mapped[list[float] | None] = mapped_column(JSON, nullable=True)
    val_losses: Mapped[list[float]] = mapped_column(JSON, default=list)
    model_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class SweepEvent(Base):
    """Something that happened to a sweep: a trial asked, scored, pruned; the end."""

    __tablename__ = "sweep_events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True, default=lambda: new_id("evt"))
    sweep_id: Mapped[str] = mapped_column(ForeignKey("sweeps.id"), index=True)
    type: Mapped[str] = mapped_column(String(64))
    level: Mapped[str] = mapped_column(String(16), default="info")
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_s)
