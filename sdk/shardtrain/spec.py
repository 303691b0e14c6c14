"""The job spec and the sweep spec, typed: mirror the server's `app/jobs/spec.py` and
`app/sweeps/spec.py` (fields, defaults, bounds and allowed values);
tests/sdk/test_openapi_drift.py fails when they part ways.

Only the fields a caller sets are sent (`to_request()`), so the server's own defaults
apply to the rest.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self, TypeVar, cast

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    JsonValue,
    Tag,
    model_validator,
)

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


# The kinds of a sweep's dimension, each the one key of its object.
DIMENSION_KINDS = ("log_uniform", "uniform", "int", "choice")


def field_path(loc: tuple[int | str, ...]) -> str:
    """A validation error's location as the field's dotted name, without the tags of the
    unions pydantic puts in it: ("model", "parametric", "dropout") -> "model.dropout",
    ("template", "model", "trees", "l2") -> "template.model.l2" and ("space",
    "training.l2", "uniform") -> "space.training.l2" (the server's `param` for each)."""
    parts = [str(p) for p in loc]
    if parts[:1] == ["template"]:
        return ".".join(["template", *filter(None, [field_path(loc[1:])])])
    if len(parts) > 1 and parts[0] == "model" and parts[1] in ("parametric", "trees"):
        del parts[1]
    if len(parts) > 2 and parts[0] == "space" and parts[2] in DIMENSION_KINDS:
        del parts[2]
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
    """`cv_folds` and `cv_fold` (set together): the job validates on fold `cv_fold` of
    the rows outside the holdout and trains on the others. A sweep sets them itself for
    each fold's job (`SweepSpec.cv_folds`); a sweep's template must not."""

    holdout_fraction: float = Field(default=0.2, ge=0.0, le=0.8)
    validation_fraction: float = Field(default=0.1, ge=0.0, le=0.8)
    cv_folds: int | None = Field(default=None, ge=2, le=10)
    cv_fold: int | None = Field(default=None, ge=0, le=9)

    @model_validator(mode="after")
    def _leaves_training_rows(self) -> Self:
        if self.holdout_fraction + self.validation_fraction > 0.9:
            raise ValueError("holdout_fraction + validation_fraction must leave training rows")
        if (self.cv_folds is None) != (self.cv_fold is None):
            raise ValueError("cv_folds and cv_fold are set together")
        if self.cv_folds is not None and self.cv_fold is not None and self.cv_fold >= self.cv_folds:
            raise ValueError(f"cv_fold {self.cv_fold} is not one of 0 … {self.cv_folds - 1}")
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


# A sweep's request: `SweepSpec` and the four kinds of dimension its space is made of.


def _pair(value: Any) -> Any:
    # [low, high] arrives as a list (JSON, YAML, a literal); strict mode takes only a
    # tuple for a tuple field. The numbers in it stay strictly checked.
    return tuple(value) if isinstance(value, list) else value


Pair = Annotated[tuple[float, float], BeforeValidator(_pair)]
IntPair = Annotated[tuple[builtins.int, builtins.int], BeforeValidator(_pair)]
MAX_DIMENSIONS = 32
MAX_CHOICES = 64


class LogUniform(_Strict):
    """`{"log_uniform": [low, high]}`: drawn on a log scale, 0 < low < high
    (learning rates, penalties)."""

    log_uniform: Pair

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        low, high = self.log_uniform
        if not 0 < low < high:
            raise ValueError(f"log_uniform needs 0 < low < high; got [{low:g}, {high:g}]")
        return self


class Uniform(_Strict):
    """`{"uniform": [low, high]}`: drawn evenly, low < high."""

    uniform: Pair

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        low, high = self.uniform
        if not low < high:
            raise ValueError(f"uniform needs low < high; got [{low:g}, {high:g}]")
        return self


class IntRange(_Strict):
    """`{"int": [low, high], "step": 1}`: low, low + step, …, high (both included)."""

    # The server's field name, `int`, which shadows the type in this class's body.
    int: IntPair
    step: builtins.int = Field(default=1, ge=1)

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
    """`{"choice": [...]}`: one of 2 to 64 JSON values: numbers, strings, lists
    (`[[16], [64, 64]]` for `model.hidden_layers`) or whole `model` blocks."""

    choice: list[JsonValue] = Field(min_length=2, max_length=MAX_CHOICES)


def _dimension_kind(value: object) -> str:
    # A dict when validating a request; the model itself when serialising one.
    keys = value if isinstance(value, dict) else getattr(type(value), "model_fields", {})
    for kind in DIMENSION_KINDS:
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
    """A hyperparameter sweep: trials are jobs made from `template` with values drawn
    from `space` (dotted job spec fields: `training.learning_rate`,
    `model.hidden_layers`, or `model` for whole model blocks), scored by `metric` on
    their validation rows, up to `max_trials` (and `max_seconds`), `parallelism` at once.
    The server checks the space against the template and the dataset, naming the field
    (`param`: `template.…`, `space.…`)."""

    template: JobSpec
    space: dict[str, Dimension] = Field(min_length=1, max_length=MAX_DIMENSIONS)
    metric: MetricName
    # None: the metric's own direction (maximize accuracy, minimize rmse).
    direction: Literal["maximize", "minimize"] | None = None
    max_trials: int = Field(default=20, ge=1, le=500)
    # No trial starts after this many seconds.
    max_seconds: int | None = Field(default=None, ge=1, le=7 * 86_400)
    parallelism: int = Field(default=2, ge=1, le=32)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    sampler: Literal["tpe", "random"] = "tpe"
    pruner: Literal["median", "successive_halving", "none"] = "median"
    # Cross-validation: one job per fold for each trial, scored by the folds' mean.
    cv_folds: int | None = Field(default=None, ge=2, le=10)

    def to_request(self) -> dict[str, Any]:
        """The JSON body: only what was set (in the template too), so unset fields take
        the server's defaults."""
        return self.model_dump(mode="json", exclude_unset=True)


Spec = TypeVar("Spec", JobSpec, SweepSpec)


def request_body(
    spec_type: type[Spec], spec: Spec | Mapping[str, Any] | None, fields: Mapping[str, Any]
) -> dict[str, Any]:
    """A spec, a mapping (validated into one) or keyword fields, with `fields` laid over
    the first two: validated here, so a mistake fails before the request."""
    if spec is None:
        spec = spec_type.model_validate(dict(fields))
    elif not isinstance(spec, spec_type):
        # mypy does not narrow by a class held in a variable: what is left is the mapping.
        spec = spec_type.model_validate({**cast(Mapping[str, Any], spec), **fields})
    elif fields:
        spec = spec_type.model_validate({**spec.to_request(), **fields})
    return spec.to_request()
