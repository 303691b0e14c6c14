"""A sweep's request: a job spec template, the space its trials are drawn from, the
metric and its direction, the budget, and the seed. The field names are DESIGN.md's."""

import builtins
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Discriminator, Field, JsonValue, Tag, model_validator

from app.jobs.spec import MetricName
from app.training.metrics import HIGHER_IS_BETTER

MAX_DIMENSIONS = 32
MAX_CHOICES = 64


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class LogUniform(_Strict):
    log_uniform: tuple[float, float] = Field(description="[low, high], 0 < low < high.")

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        low, high = self.log_uniform
        if not 0 < low < high:
            raise ValueError(f"log_uniform needs 0 < low < high; got [{low:g}, {high:g}]")
        return self


class Uniform(_Strict):
    uniform: tuple[float, float] = Field(description="[low, high], low < high.")

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        low, high = self.uniform
        if not low < high:
            raise ValueError(f"uniform needs low < high; got [{low:g}, {high:g}]")
        return self


class IntRange(_Strict):
    # The field is DESIGN.md's name, `int`, which shadows the type in this class's body.
    int: tuple[builtins.int, builtins.int] = Field(description="[low, high], both included.")
    step: builtins.int = Field(
        default=1, ge=1, description="Values low, low + step, …, up to high."
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        low, high = self.int
        if not low < high:
            raise ValueError(f"int needs low < high; got [{low}, {high}]")
        if (high - low) % self.step:
            raise ValueError(
                f"int: high - low ({high - low}) is not a multiple of step {self.step}"
            )
        return self


class Choice(_Strict):
    choice: list[JsonValue] = Field(
        min_length=2,
        max_length=MAX_CHOICES,
        description="Any JSON values: numbers, strings, lists (`[[16], [64, 64]]`), or "
        "whole blocks such as `model` objects.",
    )


def _dimension_kind(value: object) -> str:
    # A dict when validating a request; the model itself when serialising one.
    keys = value if isinstance(value, dict) else getattr(type(value), "model_fields", {})
    for kind in ("log_uniform", "uniform", "int", "choice"):
        if kind in keys:
            return kind
    return "unknown"


Dimension = Annotated[
    Annotated[LogUniform, Tag("log_uniform")]
    | Annotated[Uniform, Tag("uniform")]
    | Annotated[IntRange, Tag("int")]
    | Annotated[Choice, Tag("choice")],
    Discriminator(
        _dimension_kind,
        custom_error_type="invalid_dimension",
        custom_error_message="a dimension is {log_uniform: [lo, hi]}, {uniform: [lo, hi]}, "
        "{int: [lo, hi], step?} or {choice: [...]}",
    ),
]


class SweepSpec(_Strict):
    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={
            "example": {
                "template": {
                    "dataset_id": "ds_4f1c2a9b8e7d6c5b4a3f2e1d",
                    "target": "species",
                    "model": {"type": "mlp", "hidden_layers": [32]},
                    "distribution": {"shards": 2},
                },
                "space": {
                    "training.learning_rate": {"log_uniform": [1e-4, 1.0]},
                    "model.hidden_layers": {"choice": [[16], [64], [64, 64]]},
                    "training.l2": {"uniform": [0, 0.01]},
                    "training.rounds": {"int": [5, 50], "step": 5},
                },
                "metric": "accuracy",
                "direction": "maximize",
                "max_trials": 12,
                "parallelism": 2,
                "seed": 0,
            }
        },
    )

    template: dict[str, Any] = Field(
        description="A job spec (`POST /v1/jobs`'s body: paste your dataset's id as its "
        "`dataset_id`); each trial is it with the space's values set."
    )
    space: dict[str, Dimension] = Field(
        min_length=1,
        max_length=MAX_DIMENSIONS,
        description="Dotted spec fields (`training.learning_rate`, `model.hidden_layers`, "
        "or `model` for whole model blocks) and the values trials draw for them.",
    )
    metric: MetricName = Field(description="The validation metric a trial is scored by.")
    direction: Literal["maximize", "minimize"] | None = Field(
        default=None, description="Default: the metric's own (maximize accuracy, minimize rmse)."
    )
    max_trials: int = Field(default=20, ge=1, le=500)
    max_seconds: int | None = Field(
        default=None, ge=1, le=7 * 86_400, description="No trial starts after this."
    )
    parallelism: int = Field(default=2, ge=1, le=32, description="Trials running at once.")
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    sampler: Literal["tpe", "random"] = "tpe"
    pruner: Literal["median", "successive_halving", "none"] = "median"
    cv_folds: int | None = Field(default=None, ge=2, le=10)

    @property
    def maximize(self) -> bool:
        if self.direction is not None:
            return self.direction == "maximize"
        return HIGHER_IS_BETTER[self.metric]
