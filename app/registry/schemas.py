from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class FeatureOut(BaseModel):
    name: str
    dtype: str


class GateOut(BaseModel):
    metric: str
    min: float | None = None
    max: float | None = None
    value: float | None = None
    passed: bool
    overridden_at: int | None = Field(
        default=None, description="When a rejected model was deployed by hand."
    )


class ModelOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    object: Literal["model"] = "model"
    job_id: str
    task: str
    type: str
    status: Literal["deployed", "rejected"]
    metrics: dict[str, float] = Field(description="Scores on the holdout rows.")
    gate: GateOut | None = Field(description="The deploy_if decision, when the job had one.")
    features: list[FeatureOut]
    target: str
    classes: list[Any] | None
    created_at: int


class PredictRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"example": {"inputs": [{"sepal_length": 5.1, "sepal_width": 3.5}]}},
    )

    inputs: list[dict[str, Any]] = Field(min_length=1, description="Raw records, column: value.")


class PredictionOut(BaseModel):
    object: Literal["prediction"] = "prediction"
    model_id: str
    predictions: list[Any]
    probabilities: list[dict[str, float]] | None = Field(
        default=None, description="Per-class probabilities, for classification only."
    )


class BatchPredictionCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"example": {"dataset_id": "ds_4f1c2a9b8e7d6c5b4a3f2e1d"}}
    )

    dataset_id: str = Field(min_length=1, max_length=64)


class BatchPredictionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    object: Literal["batch_prediction"] = "batch_prediction"
    model_id: str
    dataset_id: str
    status: Literal["queued", "running", "succeeded", "failed"]
    rows: int | None = Field(description="Rows predicted, once succeeded.")
    error: str | None
    created_at: int
    finished_at: int | None
