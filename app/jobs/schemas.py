from typing import Any, Literal

from pydantic import BaseModel, Field

from app.jobs.spec import JobSpec


class Progress(BaseModel):
    round: int
    rounds: int


class JobError(BaseModel):
    code: str
    message: str


class JobOut(BaseModel):
    id: str
    object: Literal["job"] = "job"
    status: Literal["queued", "preparing", "running", "succeeded", "failed", "cancelled"]
    spec: JobSpec
    task: str | None = Field(description="classification or regression, once resolved.")
    progress: Progress
    metrics: dict[str, Any] | None = Field(description="Latest validation (then holdout) metrics.")
    model_id: str | None
    error: JobError | None
    created_at: int
    started_at: int | None
    finished_at: int | None


class RoundMetricsOut(BaseModel):
    object: Literal["job.round"] = "job.round"
    round: int
    train_loss: float | None
    val_loss: float | None
    val_metrics: dict[str, float]
    shards: list[dict[str, Any]]
    excluded_shards: list[int]
    seconds: float
    created_at: int
