"""The job spec, typed: mirrors the server's `app/jobs/spec.py` (fields, defaults, bounds
and allowed values); tests/sdk/test_openapi_drift.py fails when the two part ways.

Only the fields a caller sets are sent (`to_request()`), so the server's own defaults
apply to the rest.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

MetricName = Literal["accuracy", "log_loss", "f1_macro", "roc_auc", "rmse", "mae", "r2"]


class _Strict(BaseModel):
    # A misspelt field or a wrong JSON type ("4" shards, `true` as a learning rate) fails
    # here, before the request, as it would on the server; an int still fills a float.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


class ModelSpec(_Strict):
    type: Literal["logistic_regression", "linear_regression", "mlp"] = "logistic_regression"
    hidden_layers: list[Annotated[int, Field(ge=1, le=4096)]] = Field(
        default_factory=lambda: [64], max_length=16
    )
    activation: Literal["relu", "tanh", "gelu"] = "relu"
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)


class GradientBoostedTreesSpec(_Strict):
    """Histogram gradient boosting, one tree level per round. A trees job takes no
    `training` settings but `seed` and `early_stopping` (patience counts trees), and no
    `preprocessing`, `aggregation` or `trim_fraction`: the server refuses them."""

    type: Literal["gradient_boosted_trees"]
    n_trees: int = Field(default=100, ge=1, le=10_000)
    max_depth: int = Field(default=6, ge=1, le=10)
    learning_rate: float = Field(default=0.1, gt=0.0, le=1.0)
    max_bins: int = Field(default=255, ge=2, le=255)
    min_child_weight: float = Field(default=1.0, ge=0.0, le=1e6)
    l2: float = Field(default=1.0, ge=0.0, le=1e6)
    min_split_gain: float = Field(default=0.0, ge=0.0, le=1e6)
    subsample: float = Field(default=1.0, gt=0.0, le=1.0)
    colsample: float = Field(default=1.0, gt=0.0, le=1.0)


def _model_kind(value: object) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return "trees" if kind == "gradient_boosted_trees" else "parametric"


AnyModelSpec = Annotated[
    Annotated[ModelSpec, Tag("parametric")] | Annotated[GradientBoostedTreesSpec, Tag("trees")],
    Discriminator(_model_kind),
]


def field_path(loc: tuple[int | str, ...]) -> str:
    """A validation error's location as the field's dotted name, without the tag of the
    `model` union pydantic puts in it: ("model", "parametric", "dropout") -> "model.dropout"."""
    parts = [str(p) for p in loc]
    if len(parts) > 1 and parts[0] == "model" and parts[1] in ("parametric", "trees"):
        del parts[1]
    return ".".join(parts)


class PreprocessingSpec(_Strict):
    standardize: bool = True
    impute: Literal["mean", "median", "most_frequent"] = "mean"
    categorical: Literal["one_hot"] = "one_hot"


class EarlyStoppingSpec(_Strict):
    patience: int = Field(default=3, ge=1, le=1000)
    min_delta: float = Field(default=1e-4, ge=0.0)


class TrainingSpec(_Strict):
    optimizer: Literal["sgd", "momentum", "adam"] = "adam"
    learning_rate: float = Field(default=0.01, gt=0.0, le=10.0)
    batch_size: int = Field(default=256, ge=1, le=1_000_000)
    local_epochs: int = Field(default=1, ge=1, le=1000)
    rounds: int = Field(default=10, ge=1, le=1000)
    l1: float = Field(default=0.0, ge=0.0, le=1e3)
    l2: float = Field(default=0.0, ge=0.0, le=1e3)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    early_stopping: EarlyStoppingSpec | None = Field(default_factory=EarlyStoppingSpec)


class DistributionSpec(_Strict):
    shards: int = Field(default=4, ge=1, le=256)
    aggregation: Literal["fedavg", "mean", "median", "trimmed_mean"] = "fedavg"
    trim_fraction: float = Field(default=0.1, ge=0.0, lt=0.5)
    device: Literal["auto", "cpu", "cuda"] = "auto"


class ValidationSpec(_Strict):
    holdout_fraction: float = Field(default=0.2, ge=0.0, le=0.8)
    validation_fraction: float = Field(default=0.1, ge=0.0, le=0.8)

    @model_validator(mode="after")
    def _leaves_training_rows(self) -> Self:
        if self.holdout_fraction + self.validation_fraction > 0.9:
            raise ValueError("holdout_fraction + validation_fraction must leave training rows")
        return self


class DeployGate(_Strict):
    """Deploy the model only if `metric` is within `min`/`max`, and, with
    `beats="champion"`, only if it beats the `model_name`'s champion by `by` on this job's
    holdout rows (the winner becomes champion; with no champion yet, `min`/`max` alone
    decide). The server also wants `model_name` and a holdout for `beats`."""

    metric: MetricName
    min: float | None = None
    max: float | None = None
    beats: Literal["champion"] | None = None
    # The least improvement of `metric` that promotes; the server's default is 0.
    by: float | None = Field(default=None, ge=0.0, le=1e6)

    @model_validator(mode="after")
    def _has_bound(self) -> Self:
        if self.min is None and self.max is None and self.beats is None:
            raise ValueError("deploy_if needs `min`, `max` or `beats`")
        if self.by is not None and self.beats is None:
            raise ValueError('deploy_if.by is the margin of `beats`; set beats: "champion"')
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(
                f"deploy_if.min ({self.min:g}) is above deploy_if.max ({self.max:g}): "
                "no value could pass"
            )
        return self


# What `init_from.model` may be: a model id, `name@alias` or `name@version` (the server's
# INIT_FROM_PATTERN in app/jobs/spec.py).
INIT_FROM_PATTERN = (
    r"^(mdl_[0-9a-f]{1,36}"
    r"|[A-Za-z0-9][A-Za-z0-9._-]{0,63}@([A-Za-z][A-Za-z0-9_-]{0,63}|[1-9][0-9]{0,9}))$"
)


class InitFrom(_Strict):
    """A warm start: train on from `model`'s parameters (and its fitted preprocessing)
    instead of from scratch. `model` is a model id (`mdl_…`), `name@alias`
    (`churn@champion`) or `name@version` (`churn@3`), resolved when the job is created
    (`Job.init_model_id`). The server checks that the job means by its parameters what
    the model does (task, model type and shape, target, features, preprocessing)."""

    model: str = Field(max_length=140, pattern=INIT_FROM_PATTERN)


class JobSpec(_Strict):
    """Every field but `dataset_id` and `target` has a default (the server's)."""

    dataset_id: str = Field(min_length=1, max_length=64)
    target: str = Field(min_length=1, max_length=255)
    features: list[Annotated[str, Field(min_length=1, max_length=255)]] | None = Field(
        default=None, max_length=10_000
    )
    task: Literal["auto", "classification", "regression"] = "auto"
    model: AnyModelSpec = Field(default_factory=ModelSpec)
    preprocessing: PreprocessingSpec = Field(default_factory=PreprocessingSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    distribution: DistributionSpec = Field(default_factory=DistributionSpec)
    validation: ValidationSpec = Field(default_factory=ValidationSpec)
    deploy_if: DeployGate | None = None
    # A warm start: `InitFrom(model="churn@champion")` or `{"model": "mdl_…"}`.
    init_from: InitFrom | None = None
    # The next version of this name; `client.model_names.get(name)` lists them.
    model_name: str | None = Field(
        default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
    )

    def to_request(self) -> dict[str, Any]:
        """The JSON body: only what was set, so unset fields take the server's defaults."""
        return self.model_dump(mode="json", exclude_unset=True)
