from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class FeatureOut(BaseModel):
    name: str
    dtype: str


class GateOut(BaseModel):
    metric: str
    min: float | None = None
    max: float | None = None
    beats: str | None = Field(
        default=None, description="`champion` for the champion gate (see `comparison`)."
    )
    by: float | None = Field(default=None, description="The champion gate's margin.")
    value: float | None = None
    passed: bool
    reason: str | None = Field(
        default=None,
        description="Why the model failed the gate: the metric was below `min`, above `max`, "
        "or could not be computed (and why).",
    )
    overridden_at: int | None = Field(
        default=None, description="When a rejected model was deployed by hand."
    )


class ComparisonOut(BaseModel):
    """The champion gate's head-to-head: candidate and champion scored on the same rows,
    the candidate's holdout, each through its own preprocessing."""

    metric: str
    by: float = Field(description="The margin the candidate had to win by.")
    rows: int = Field(description="Holdout rows both models were scored on.")
    candidate: float | None = Field(description="The candidate's score on those rows.")
    champion: float | None = Field(
        description="The champion's score on the same rows; null with no champion yet."
    )
    champion_version: int | None
    champion_model_id: str | None
    passed: bool = Field(description="Whether the candidate was promoted to champion.")
    reason: str


class FeatureImportanceOut(BaseModel):
    feature: str = Field(description="A column of the dataset.")
    gain: float = Field(description="Loss reduction summed over the splits on this column.")
    split: int = Field(description="How many splits test this column.")


class CoefficientOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    feature: str = Field(description="A column of the dataset.")
    category: str | None = Field(description="A text column's category (its one-hot slot).")
    class_: Any = Field(
        alias="class",
        serialization_alias="class",
        description="Classification: the class this weight scores; null for a regression.",
    )
    weight: float = Field(
        description="On the standardized feature (a regression's also on the standardized "
        "target), as the network holds it."
    )


class ModelOut(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "example": {
                "id": "mdl_0a1b2c3d4e5f6a7b8c9d0e1f",
                "object": "model",
                "job_id": "job_9a8b7c6d5e4f3a2b1c0d9e8f",
                "dataset_id": "ds_4f1c2a9b8e7d6c5b4a3f2e1d",
                "task": "classification",
                "type": "logistic_regression",
                "status": "deployed",
                "metrics": {"accuracy": 1.0, "log_loss": 0.112, "f1_macro": 1.0},
                "gate": {"metric": "accuracy", "min": 0.9, "value": 1.0, "passed": True},
                "features": [
                    {"name": "sepal_length", "dtype": "float"},
                    {"name": "sepal_width", "dtype": "float"},
                    {"name": "petal_length", "dtype": "float"},
                    {"name": "petal_width", "dtype": "float"},
                ],
                "target": "species",
                "classes": ["setosa", "versicolor", "virginica"],
                "created_at": 1767225700,
            }
        },
    )

    id: str
    object: Literal["model"] = "model"
    job_id: str = Field(description="The job that trained the model.")
    dataset_id: str = Field(description="The dataset that job trained on.")
    task: str
    type: str
    status: Literal["deployed", "rejected", "undeployed"] = Field(
        description="`deployed` serves predictions; `rejected`: the job's deploy_if gate "
        "failed; `undeployed`: taken out of service by hand. `deploy` serves the last two."
    )
    metrics: dict[str, float] = Field(description="Scores on the holdout rows.")
    gate: GateOut | None = Field(description="The deploy_if decision, when the job had one.")
    comparison: ComparisonOut | None = Field(
        default=None,
        description='With `deploy_if: {beats: "champion"}`: the head-to-head against the '
        "name's champion that decided this model's promotion.",
    )
    features: list[FeatureOut]
    target: str
    classes: list[Any] | None
    feature_importance: list[FeatureImportanceOut] | None = Field(
        default=None,
        description="Tree models: every feature's total split gain and split count, "
        "highest gain first; null for networks.",
    )
    coefficients: list[CoefficientOut] | None = Field(
        default=None,
        description="Linear models (logistic and linear regression): each weight by raw "
        "column (and category, and class), the largest 1 000 by magnitude, largest first; "
        "null for other models.",
    )
    model_name: str | None = Field(
        default=None, description="The job spec's `model_name`: the name this is a version of."
    )
    version: int | None = Field(
        default=None, description="Its version under `model_name` (1, 2, ...); null without one."
    )
    created_at: int


class ModelDeletedOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {"id": "mdl_0a1b2c3d4e5f6a7b8c9d0e1f", "object": "model", "deleted": True}
        }
    )

    id: str
    object: Literal["model"] = "model"
    deleted: Literal[True] = True


class PredictRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "inputs": [
                    {
                        "sepal_length": 5.1,
                        "sepal_width": 3.5,
                        "petal_length": 1.4,
                        "petal_width": 0.2,
                    }
                ]
            }
        },
    )

    inputs: list[dict[str, Any]] = Field(min_length=1, description="Raw records, column: value.")


class PredictionOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "object": "prediction",
                "model_id": "mdl_0a1b2c3d4e5f6a7b8c9d0e1f",
                "predictions": ["setosa"],
                "probabilities": [{"setosa": 0.97, "versicolor": 0.02, "virginica": 0.01}],
            }
        }
    )

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
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "example": {
                "id": "bp_5e6f7a8b9c0d1e2f3a4b5c6d",
                "object": "batch_prediction",
                "model_id": "mdl_0a1b2c3d4e5f6a7b8c9d0e1f",
                "dataset_id": "ds_4f1c2a9b8e7d6c5b4a3f2e1d",
                "status": "succeeded",
                "rows": 1000000,
                "error": None,
                "created_at": 1767225800,
                "finished_at": 1767225812,
            }
        },
    )

    id: str
    object: Literal["batch_prediction"] = "batch_prediction"
    model_id: str
    dataset_id: str
    status: Literal["queued", "running", "succeeded", "failed"]
    rows: int | None = Field(description="Rows predicted, once succeeded.")
    error: str | None
    created_at: int
    finished_at: int | None
