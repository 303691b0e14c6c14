from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

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


class EventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    object: Literal["job.event"] = "job.event"
    job_id: str
    type: str = Field(description="job.created, job.status, round.started, round.completed, …")
    level: Literal["info", "warning", "error"]
    message: str
    data: dict[str, Any]
    created_at: int


class RoundMetricsOut(BaseModel):
    object: Literal["job.round"] = "job.round"
    round: int
    train_loss: float | None
    val_loss: float | None
    val_metrics: dict[str, float]
    shards: list[dict[str, Any]]
    excluded_shards: list[int]
    seconds: float = Field(description="From the round's dispatch to the end of its merge.")
    slowest_shard_seconds: float
    created_at: int
