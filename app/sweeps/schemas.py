"""The sweep's API shapes: what `GET /v1/sweeps/{id}` answers, its trials and events."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from app.jobs.schemas import JobError
from app.sweeps.spec import SweepSpec

_EXAMPLE_TRIAL: dict[str, Any] = {
    "object": "sweep.trial",
    "number": 3,
    "params": {
        "training.learning_rate": 0.0213,
        "model.hidden_layers": [64],
        "training.l2": 0.0012,
        "training.rounds": 25,
    },
    "state": "done",
    "score": 0.962,
    "score_std": None,
    "fold_scores": None,
    "job_id": "job_9a8b7c6d5e4f3a2b1c0d9e8f",
    "job_ids": ["job_9a8b7c6d5e4f3a2b1c0d9e8f"],
    "model_id": "mdl_0f1e2d3c4b5a69788796a5b4",
    "rounds": 25,
    "val_losses": [0.51, 0.33, 0.24],
    "error": None,
    "seconds": 14.2,
}


class TrialOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": _EXAMPLE_TRIAL})

    object: Literal["sweep.trial"] = "sweep.trial"
    number: int
    params: dict[str, JsonValue] = Field(description="The values drawn, by space key.")
    state: Literal["running", "done", "pruned", "failed", "cancelled"]
    score: float | None = Field(
        description="The validation metric of the round the trial's job kept; with "
        "cross-validation, the mean over folds."
    )
    score_std: float | None = Field(description="With cross-validation: the folds' deviation.")
    fold_scores: list[float] | None = Field(description="With cross-validation: each fold's.")
    job_id: str = Field(description="The trial's job (fold 0's, with cross-validation).")
    job_ids: list[str] = Field(description="Every job of the trial: one per fold.")
    model_id: str | None = Field(
        description="The model the trial's job trained (registered undeployed); none with "
        "cross-validation, whose folds each train on part of the rows."
    )
    rounds: int = Field(description="Rounds merged so far (the folds' least).")
    val_losses: list[float] = Field(description="Validation loss per round: what pruning reads.")
    error: str | None
    seconds: float = Field(description="From the trial's start to its end (or now).")


class BestTrialOut(BaseModel):
    number: int
    params: dict[str, JsonValue]
    score: float
    score_std: float | None
    job_id: str = Field(description="The best trial's job.")
    model_id: str | None = Field(
        description="The sweep's result: the best trial's model, or the final job's once it "
        "has trained those settings (through the gate, under the model name, on every "
        "fold's rows); null until then."
    )


class SweepOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "id": "swp_5e4d3c2b1a0f9e8d7c6b5a49",
                "object": "sweep",
                "status": "running",
                "spec": SweepSpec.model_config["json_schema_extra"]["example"],  # type: ignore[index]
                "task": "classification",
                "metric": "accuracy",
                "direction": "maximize",
                "trials": [_EXAMPLE_TRIAL],
                "counts": {"running": 1, "done": 1, "pruned": 0, "failed": 0, "cancelled": 0},
                "best_trial": {
                    "number": 3,
                    "params": _EXAMPLE_TRIAL["params"],
                    "score": 0.962,
                    "score_std": None,
                    "job_id": "job_9a8b7c6d5e4f3a2b1c0d9e8f",
                    "model_id": None,
                },
                "final_job_id": None,
                "model_id": None,
                "error": None,
                "created_at": 1767225600,
                "finished_at": None,
            }
        }
    )

    id: str
    object: Literal["sweep"] = "sweep"
    status: Literal["running", "succeeded", "failed", "cancelled"]
    spec: SweepSpec
    task: str
    metric: str
    direction: Literal["maximize", "minimize"]
    trials: list[TrialOut] = Field(description="Every trial so far, by number.")
    counts: dict[str, int] = Field(description="Trials per state.")
    best_trial: BestTrialOut | None = Field(
        description="The best done trial so far: its params, score and, once delivered, model."
    )
    final_job_id: str | None = Field(
        description="The job that trains the best trial's settings for delivery, when the "
        "template names a model or a gate, or with cross-validation."
    )
    model_id: str | None = Field(description="The sweep's result, once it has succeeded.")
    error: JobError | None
    created_at: int
    finished_at: int | None


class SweepEventOut(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "example": {
                "id": "evt_2c3d4e5f6a7b8c9d0e1f2a3b",
                "object": "sweep.event",
                "sweep_id": "swp_5e4d3c2b1a0f9e8d7c6b5a49",
                "type": "trial.pruned",
                "level": "info",
                "message": "trial 5 pruned: validation loss 0.61 after round 3 is behind "
                "the other trials' (median pruner)",
                "data": {"trial": 5, "score": None, "score_std": None, "seconds": 4.1},
                "created_at": 1767225642,
            }
        },
    )

    id: str
    object: Literal["sweep.event"] = "sweep.event"
    sweep_id: str
    type: str = Field(
        description="sweep.created, trial.started, trial.done, trial.pruned, trial.failed, "
        "trial.cancelled, sweep.best_trial, sweep.final_job, sweep.status"
    )
    level: Literal["info", "warning", "error"]
    message: str
    data: dict[str, Any]
    created_at: int
