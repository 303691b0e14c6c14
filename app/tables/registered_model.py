from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.tables.base import Base, new_id, now_s


class RegisteredModel(Base):
    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("tenant_id", "model_name", "version"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True, default=lambda: new_id("mdl"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    task: Mapped[str] = mapped_column(String(16))
    type: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The gate's decision: {metric, min, max, value, passed}.
    gate: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # The champion gate's head-to-head: {metric, by, rows, candidate, champion,
    # champion_version, champion_model_id, passed}; null for every other gate.
    comparison: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    features: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    target: Mapped[str] = mapped_column(String(255))
    classes: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    # Trees: [{feature, gain, split}] over the raw columns, by gain; None for networks.
    feature_importance: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    # Linear models: [{feature, category, class, weight}] on the raw columns, largest first.
    coefficients: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    artifact_key: Mapped[str] = mapped_column(String(255))
    # Set when the job's spec named the model: its version under that name (1, 2, ...).
    model_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_s)
