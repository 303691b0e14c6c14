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
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "id": "job_9a8b7c6d5e4f3a2b1c0d9e8f",
                "object": "job",
                "status": "running",
                "spec": JobSpec.model_config["json_schema_extra"]["example"],  # type: ignore[index]
                "task": "classification",
                "progress": {"round": 4, "rounds": 10},
                "metrics": {
                    "round": 4,
                    "train_loss": 0.231,
                    "split": "validation",
                    "val_loss": 0.213,
                    "accuracy": 0.93,
                },
                "model_id": None,
                "init_model_id": None,
                "sweep_id": None,
                "error": None,
                "created_at": 1767225600,
                "started_at": 1767225601,
                "finished_at": None,
            }
        }
    )

    id: str
    object: Literal["job"] = "job"
    status: Literal["queued", "preparing", "running", "succeeded", "failed", "cancelled"]
    spec: JobSpec
    task: str | None = Field(description="classification or regression, once resolved.")
    progress: Progress
    metrics: dict[str, Any] | None = Field(description="Latest validation (then holdout) metrics.")
    model_id: str | None
    init_model_id: str | None = Field(
        default=None,
        description="With `init_from`: the model the job starts from, as resolved when it "
        "was created (an alias's version then, not now).",
    )
    sweep_id: str | None = Field(
        default=None, description="The sweep whose trial (or final job) this job is."
    )
    error: JobError | None
    created_at: int
    started_at: int | None
    finished_at: int | None


class EventOut(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "example": {
                "id": "evt_1b2c3d4e5f6a7b8c9d0e1f2a",
                "object": "job.event",
                "job_id": "job_9a8b7c6d5e4f3a2b1c0d9e8f",
                "type": "round.completed",
                "level": "info",
                "message": "round 4 of 10 merged from 4 shard(s)",
                "data": {
                    "round": 4,
                    "train_loss": 0.231,
                    "val_loss": 0.213,
                    "workers": {"0": "shardtrain@host-a", "1": "shardtrain@host-b"},
                },
                "created_at": 1767225642,
            }
        },
    )

    id: str
    object: Literal["job.event"] = "job.event"
    job_id: str
    type: str = Field(description="job.created, job.status, round.started, round.completed, …")
    level: Literal["info", "warning", "error"]
    message: str
    data: dict[str, Any]
    created_at: int


class RoundMetricsOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "object": "job.round",
                "round": 4,
                "train_loss": 0.231,
                "val_loss": 0.213,
                "val_metrics": {"accuracy": 0.93, "log_loss": 0.213},
                "shards": [
                    {
                        "shard": 0,
                        "examples": 34,
                        "loss": 0.229,
                        "seconds": 0.41,
                        "worker": "shardtrain@host-a",
                    }
                ],
                "excluded_shards": [],
                "seconds": 1.82,
                "slowest_shard_seconds": 0.47,
                "created_at": 1767225642,
            }
        }
    )

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


class JobDeletedOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {"id": "job_9a8b7c6d5e4f3a2b1c0d9e8f", "object": "job", "deleted": True}
        }
    )

    id: str
    object: Literal["job"] = "job"
    deleted: Literal[True] = True
