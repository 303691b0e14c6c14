"""The job spec: every field but `dataset_id` and `target` has a default."""

import math
from typing import Annotated, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SerializerFunctionWrapHandler,
    Tag,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from app.nul_characters import refuse_nul_field
from app.training.metrics import HIGHER_IS_BETTER
from app.training.trees import MODEL_TYPE

CLASSIFICATION_METRICS = ("accuracy", "log_loss", "f1_macro", "roc_auc")
REGRESSION_METRICS = ("rmse", "mae", "r2")
MetricName = Literal["accuracy", "log_loss", "f1_macro", "roc_auc", "rmse", "mae", "r2"]


class _Strict(BaseModel):
    # A misspelt field is an error, not a silently ignored default; NaN and infinity
    # are refused as such rather than by a bound they happen to fail. Strict types: "4"
    # is not a shard count and `true` is not a learning rate (an int still fills a float).
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

    _no_nul_characters = field_validator("*")(refuse_nul_field)


class ModelSpec(_Strict):
    type: Literal["logistic_regression", "linear_regression", "mlp"] = "logistic_regression"
    hidden_layers: list[Annotated[int, Field(ge=1, le=4096)]] = Field(
        default_factory=lambda: [64], max_length=16, description="Widths of an mlp's hidden layers."
    )
    activation: Literal["relu", "tanh", "gelu"] = "relu"
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)


TREES = MODEL_TYPE


class GradientBoostedTreesSpec(_Strict):
    """Histogram gradient boosting (as LightGBM and XGBoost `hist`), grown one tree
    level per round from every shard's gradient histograms."""

    type: Literal["gradient_boosted_trees"]
    n_trees: int = Field(default=100, ge=1, le=10_000, description="Boosting iterations.")
    max_depth: int = Field(default=6, ge=1, le=10, description="Splits from root to leaf.")
    learning_rate: float = Field(default=0.1, gt=0.0, le=1.0, description="Shrinkage.")
    max_bins: int = Field(default=255, ge=2, le=255, description="Value bins per feature.")
    min_child_weight: float = Field(
        default=1.0, ge=0.0, le=1e6, description="Least hessian sum a child may hold."
    )
    l2: float = Field(default=1.0, ge=0.0, le=1e6, description="L2 penalty on leaf values.")
    min_split_gain: float = Field(default=0.0, ge=0.0, le=1e6)
    subsample: float = Field(
        default=1.0, gt=0.0, le=1.0, description="Fraction of rows each tree sees, seeded."
    )
    colsample: float = Field(
        default=1.0, gt=0.0, le=1.0, description="Fraction of columns each tree may split on."
    )


# The tags of the `model` union, which pydantic puts in an error's location
# (("model", "parametric", "dropout")); app/errors.py leaves them out of `param`.
MODEL_UNION_TAGS = ("parametric", "trees")


def _model_kind(value: object) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return "trees" if kind == TREES else "parametric"


AnyModelSpec = Annotated[
    Annotated[ModelSpec, Tag("parametric")] | Annotated[GradientBoostedTreesSpec, Tag("trees")],
    Discriminator(_model_kind),
]

# Settings that mean nothing to a tree learner, refused when a trees spec sets them
# (a silently ignored optimizer would look like it had been applied).
NOT_FOR_TREES = {
    "training": ("optimizer", "learning_rate", "batch_size", "local_epochs", "rounds", "l1", "l2"),
    "preprocessing": ("standardize", "impute", "categorical"),
    "distribution": ("aggregation", "trim_fraction"),
}
TREES_INSTEAD = {
    "training.learning_rate": "model.learning_rate",
    "training.rounds": "model.n_trees",
    "training.l2": "model.l2",
}


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
    holdout_fraction: float = Field(
        default=0.2, ge=0.0, le=0.8, description="Rows kept out of training for the final score."
    )
    validation_fraction: float = Field(
        default=0.1, ge=0.0, le=0.8, description="Rows scored after every round."
    )

    cv_folds: int | None = Field(
        default=None,
        ge=2,
        le=10,
        description="Cross-validation: the rows outside the holdout go into this many "
        "seeded, disjoint folds; the job validates on fold `cv_fold` and trains on the "
        "rest (`validation_fraction` is then unused). A sweep's `cv_folds` runs one such "
        "job per fold.",
    )
    cv_fold: int | None = Field(
        default=None, ge=0, le=9, description="The fold validated on, 0 … cv_folds - 1."
    )

    @model_validator(mode="after")
    def _leaves_training_rows(self) -> Self:
        if self.holdout_fraction + self.validation_fraction > 0.9:
            raise ValueError("holdout_fraction + validation_fraction must leave training rows")
        if (self.cv_folds is None) != (self.cv_fold is None):
            raise ValueError("cv_folds and cv_fold are set together")
        if self.cv_folds is not None and self.cv_fold is not None and self.cv_fold >= self.cv_folds:
            raise ValueError(f"cv_fold {self.cv_fold} is not one of 0 … {self.cv_folds - 1}")
        return self

    @property
    def cv(self) -> tuple[int, int] | None:
        """(folds, fold) for a cross-validation fold's job."""
        if self.cv_folds is None or self.cv_fold is None:
            return None
        return self.cv_folds, self.cv_fold


_STORED = "stored"


class DeployGate(_Strict):
    metric: MetricName
    min: float | None = None
    max: float | None = None
    beats: Literal["champion"] | None = Field(
        default=None,
        description="Deploy only a model that beats the `model_name`'s champion by `by` on "
        "this job's holdout rows, both models scored through their own preprocessing; "
        "the winner becomes champion. With no champion yet, `min`/`max` alone decide.",
    )
    by: float | None = Field(
        default=None,
        ge=0.0,
        le=1e6,
        description="With `beats`: the least improvement of `metric` that promotes "
        "(default 0: any improvement).",
    )

    @model_validator(mode="after")
    def _has_bound(self, info: ValidationInfo) -> Self:
        if self.min is None and self.max is None and self.beats is None:
            raise ValueError("deploy_if needs `min`, `max` or `beats`")
        if self.by is not None and self.beats is None:
            raise ValueError('deploy_if.by is the margin of `beats`; set beats: "champion"')
        # A stored spec passed the rules of its day; one accepted before this check
        # existed must still read, or its job's every read would fail.
        stored = bool(info.context and info.context.get(_STORED))
        if not stored and self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(
                f"deploy_if.min ({self.min:g}) is above deploy_if.max ({self.max:g}): "
                "no value could pass"
            )
        return self

    # No return annotation: see JobSpec._without_unused.
    @model_serializer(mode="wrap")
    def _plain_without_beats(self, handler: SerializerFunctionWrapHandler):
        """A plain gate dumps, stores and compares (idempotency keys) as it did before
        `beats` existed."""
        body = handler(self)
        if self.beats is None:
            body.pop("beats", None)
            body.pop("by", None)
        return body

    @property
    def margin(self) -> float:
        return self.by or 0.0

    @property
    def has_bound(self) -> bool:
        return self.min is not None or self.max is not None

    def stored_decision(self) -> dict[str, object]:
        """The gate's settings as recorded with its decision; a plain gate's as before
        `beats` existed."""
        if self.beats is None:
            return self.model_dump()
        return {**self.model_dump(), "by": self.margin}

    def passes(self, value: float | None) -> bool:
        return self.rejection(value) is None

    def rejection(self, value: float | None, unavailable: str | None = None) -> str | None:
        """Why `value` fails the gate, or None when it passes.

        A metric that could not be computed (None, NaN, infinite) always fails: a gate
        that let it through would deploy a model nobody could score.
        """
        if value is None or not math.isfinite(value):
            why = unavailable or ("it is not finite" if value is not None else "it was not scored")
            return f"{self.metric} could not be computed: {why}"
        if self.min is not None and value < self.min:
            return f"{self.metric} {value:.6g} is below deploy_if.min {self.min:g}"
        if self.max is not None and value > self.max:
            return f"{self.metric} {value:.6g} is above deploy_if.max {self.max:g}"
        return None


MODEL_NAME_MAX = 64
# URL-safe as a path segment, never `.` or `..` alone.
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
# A model id, or a named model's alias or version: `churn@champion`, `churn@3`.
INIT_FROM_PATTERN = (
    r"^(mdl_[0-9a-f]{1,36}"
    r"|[A-Za-z0-9][A-Za-z0-9._-]{0,63}@([A-Za-z][A-Za-z0-9_-]{0,63}|[1-9][0-9]{0,9}))$"
)


class InitFrom(_Strict):
    model: str = Field(
        max_length=140,
        pattern=INIT_FROM_PATTERN,
        description="The model to start from: its id (`mdl_…`), or `name@alias` "
        "(`churn@champion`) or `name@version` (`churn@3`), resolved when the job is "
        "created. Its features, target, task, preprocessing and shape must be this "
        "job's; its fitted preprocessing is reused, not fitted again.",
    )


class JobSpec(_Strict):
    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        strict=True,
        json_schema_extra={
            "example": {
                # The id an iris upload answered with; this one exists nowhere.
                "dataset_id": "ds_4f1c2a9b8e7d6c5b4a3f2e1d",
                "target": "species",
                "features": ["sepal_length", "sepal_width", "petal_length", "petal_width"],
                "model": {"type": "logistic_regression"},
                "training": {
                    "rounds": 10,
                    "local_epochs": 5,
                    "batch_size": 16,
                    "learning_rate": 0.05,
                },
                "distribution": {"shards": 4},
                "deploy_if": {"metric": "accuracy", "min": 0.9},
            }
        },
    )

    dataset_id: str = Field(
        min_length=1,
        max_length=64,
        description="The `id` that `POST /v1/datasets` answered with. The example trains on "
        "iris: paste your iris upload's id over the example's, which exists nowhere.",
    )
    target: str = Field(min_length=1, max_length=255)
    features: list[Annotated[str, Field(min_length=1, max_length=255)]] | None = Field(
        default=None, max_length=10_000, description="Columns to train on; default all but target."
    )
    task: Literal["auto", "classification", "regression"] = "auto"
    model: AnyModelSpec = Field(default_factory=ModelSpec)
    preprocessing: PreprocessingSpec = Field(default_factory=PreprocessingSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    distribution: DistributionSpec = Field(default_factory=DistributionSpec)
    validation: ValidationSpec = Field(default_factory=ValidationSpec)
    deploy_if: DeployGate | None = None
    init_from: InitFrom | None = Field(
        default=None, description="Warm start: train on from another model's parameters."
    )
    model_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=MODEL_NAME_MAX,
        pattern=MODEL_NAME_PATTERN,
        description="Add the trained model as the next version (1, 2, ...) of this name: "
        "letters, digits, `.`, `_` and `-`, starting with a letter or digit. "
        "`GET /v1/model-names/{name}` lists its versions.",
    )

    @property
    def is_trees(self) -> bool:
        return isinstance(self.model, GradientBoostedTreesSpec)

    @property
    def rounds(self) -> int:
        """Rounds the job runs at most: one per tree level for trees."""
        if isinstance(self.model, GradientBoostedTreesSpec):
            return self.model.n_trees * self.model.max_depth
        return self.training.rounds

    @property
    def quota_rounds(self) -> tuple[int, str]:
        """What the tenant's max_rounds counts, and the field that sets it: a tree job's
        rounds are its levels, but its user thinks in trees."""
        if isinstance(self.model, GradientBoostedTreesSpec):
            return self.model.n_trees, "model.n_trees"
        return self.training.rounds, "training.rounds"

    @property
    def passes_per_round(self) -> int:
        """How often a shard task reads each of its rows: a tree level reads them once."""
        return 1 if self.is_trees else self.training.local_epochs

    def not_applicable(self) -> str | None:
        """The first setting the spec sets that its model does not use, as a dotted name."""
        if not self.is_trees:
            return None
        for section, names in NOT_FOR_TREES.items():
            given = getattr(self, section).model_fields_set
            for name in names:
                if name in given:
                    return f"{section}.{name}"
        return None

    # No return annotation: one would replace JobSpec's own schema in the OpenAPI
    # document with that of a bare dict.
    @model_serializer(mode="wrap")
    def _without_unused(self, handler: SerializerFunctionWrapHandler):
        """Dumped, stored and shown with defaults filled in, less the settings its model
        does not use: a trees job shows no optimizer it never ran."""
        body = handler(self)
        if self.is_trees:
            for section, names in NOT_FOR_TREES.items():
                for name in names:
                    body[section].pop(name, None)
        return body

    @classmethod
    def stored(cls, spec: dict[str, object]) -> "JobSpec":
        """A job's spec as stored with it, read back: checks that only a new request
        must pass (a gate that no value could pass) are not applied again."""
        return cls.model_validate(spec, context={_STORED: True})


def resolve_task(spec: JobSpec, target_dtype: str | None) -> str:
    """The task a spec trains: stated, implied by the model, or read off the target's dtype."""
    if spec.task != "auto":
        return spec.task
    if spec.model.type == "logistic_regression":
        return "classification"
    if spec.model.type == "linear_regression":
        return "regression"
    # An mlp or trees follow its target: floats are regressed, anything else is a label.
    return "regression" if target_dtype == "float" else "classification"


def metric_fits_task(metric: str, task: str) -> bool:
    names = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    return metric in names and metric in HIGHER_IS_BETTER
