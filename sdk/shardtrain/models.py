"""The API's objects as pydantic models. Unknown fields a newer server adds are kept
(`extra="allow"`), never an error; tests/sdk/test_openapi_drift.py checks that every
field the server declares is declared here with a compatible type."""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)

from shardtrain.spec import JobSpec, SweepSpec

JOB_TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
SWEEP_TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
DATASET_TERMINAL = frozenset({"ready", "failed"})
BATCH_TERMINAL = frozenset({"succeeded", "failed"})


class APIObject(BaseModel):
    model_config = ConfigDict(extra="allow")


class Column(APIObject):
    name: str
    dtype: Literal["int", "float", "bool", "string"]
    missing: int
    # Gathered at ingest: numbers and booleans (0/1) their range and mean, text its
    # distinct values (up to 1 000; None past that). None for datasets ingested before.
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    distinct: int | None = None


class Dataset(APIObject):
    id: str
    object: Literal["dataset"] = "dataset"
    name: str
    format: str
    bytes: int
    # None while an imported object is still being copied in.
    sha256: str | None = None
    source_url: str | None = None
    status: Literal["processing", "ready", "failed"]
    rows: int | None = None
    columns: list[Column] | None = None
    error: str | None = None
    created_at: int


class DatasetPreview(APIObject):
    object: Literal["dataset.preview"] = "dataset.preview"
    dataset_id: str
    data: list[dict[str, Any]]
    has_more: bool


class DatasetDeleted(APIObject):
    id: str
    object: Literal["dataset"] = "dataset"
    deleted: bool = True


class JobDeleted(APIObject):
    id: str
    object: Literal["job"] = "job"
    deleted: bool = True


class ModelDeleted(APIObject):
    id: str
    object: Literal["model"] = "model"
    deleted: bool = True


def _spec_as_sent(
    spec_type: type[JobSpec] | type[SweepSpec],
    value: Any,
    handler: ValidatorFunctionWrapHandler,
) -> Any:
    # The specs are strict so that a caller's typo fails before the request; a spec the
    # server sends back with a field or value this SDK does not know yet must not make
    # every read of the job or sweep fail. Known fields are kept as sent.
    try:
        return handler(value)
    except ValidationError:
        if not isinstance(value, dict):
            raise
        return spec_type.model_construct(**value)


class Progress(APIObject):
    round: int
    rounds: int


class JobError(APIObject):
    code: str
    message: str


class Job(APIObject):
    id: str
    object: Literal["job"] = "job"
    status: Literal["queued", "preparing", "running", "succeeded", "failed", "cancelled"]
    spec: JobSpec
    task: str | None = None
    progress: Progress
    metrics: dict[str, Any] | None = None
    model_id: str | None = None
    # With `spec.init_from`: the model the job starts from, as resolved when it was
    # created (an alias's version then, not now); None otherwise and on older servers.
    init_model_id: str | None = None
    # The sweep whose trial (or final job) this job is; None otherwise and on older servers.
    sweep_id: str | None = None
    error: JobError | None = None
    created_at: int
    started_at: int | None = None
    finished_at: int | None = None

    @field_validator("spec", mode="wrap")
    @classmethod
    def _spec_from_a_newer_server(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        return _spec_as_sent(JobSpec, value, handler)

    @property
    def done(self) -> bool:
        return self.status in JOB_TERMINAL


class Event(APIObject):
    id: str
    object: Literal["job.event"] = "job.event"
    job_id: str
    type: str
    level: Literal["info", "warning", "error"]
    message: str
    data: dict[str, Any]
    created_at: int


class SweepTrial(APIObject):
    """One trial of a sweep: the values drawn (`params`, by space key), its job, and its
    score, the validation metric of the round its job kept (with cross-validation, the
    folds' mean, `score_std` their deviation, `fold_scores` each one's, one job a fold)."""

    object: Literal["sweep.trial"] = "sweep.trial"
    number: int
    params: dict[str, Any]
    state: Literal["running", "done", "pruned", "failed", "cancelled"]
    score: float | None = None
    score_std: float | None = None
    fold_scores: list[float] | None = None
    job_id: str
    job_ids: list[str]
    # None with cross-validation (each fold trains on part of the rows).
    model_id: str | None = None
    rounds: int
    val_losses: list[float]
    error: str | None = None
    seconds: float


class BestTrial(APIObject):
    """The best done trial so far; `model_id` is the sweep's result once delivered."""

    number: int
    params: dict[str, Any]
    score: float
    score_std: float | None = None
    job_id: str
    model_id: str | None = None


class Sweep(APIObject):
    id: str
    object: Literal["sweep"] = "sweep"
    status: Literal["running", "succeeded", "failed", "cancelled"]
    spec: SweepSpec
    task: str
    metric: str
    direction: Literal["maximize", "minimize"]
    trials: list[SweepTrial]
    # Trials per state: running, done, pruned, failed, cancelled.
    counts: dict[str, int]
    best_trial: BestTrial | None = None
    # The job that trains the best trial's settings for delivery: with a `model_name` or
    # `deploy_if` in the template, or with `cv_folds`.
    final_job_id: str | None = None
    # The sweep's result, once it has succeeded.
    model_id: str | None = None
    error: JobError | None = None
    created_at: int
    finished_at: int | None = None

    @field_validator("spec", mode="wrap")
    @classmethod
    def _spec_from_a_newer_server(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        return _spec_as_sent(SweepSpec, value, handler)

    @property
    def done(self) -> bool:
        return self.status in SWEEP_TERMINAL


class SweepEvent(APIObject):
    id: str
    object: Literal["sweep.event"] = "sweep.event"
    sweep_id: str
    # sweep.created, trial.started, trial.done, trial.pruned, trial.failed,
    # trial.cancelled, sweep.best_trial, sweep.final_job, sweep.status
    type: str
    level: Literal["info", "warning", "error"]
    message: str
    data: dict[str, Any]
    created_at: int


class RoundMetrics(APIObject):
    object: Literal["job.round"] = "job.round"
    round: int
    train_loss: float | None = None
    val_loss: float | None = None
    val_metrics: dict[str, float]
    shards: list[dict[str, Any]]
    excluded_shards: list[int]
    seconds: float
    slowest_shard_seconds: float
    created_at: int


class Feature(APIObject):
    name: str
    dtype: str


class Gate(APIObject):
    metric: str
    min: float | None = None
    max: float | None = None
    # The champion gate: `beats="champion"` and its margin `by` (see Model.comparison).
    beats: str | None = None
    by: float | None = None
    value: float | None = None
    passed: bool
    reason: str | None = None
    overridden_at: int | None = None


class Comparison(APIObject):
    """The champion gate's head-to-head: the candidate and the name's champion scored on
    the same rows (the candidate's holdout), each through its own preprocessing."""

    metric: str
    by: float  # the margin the candidate had to win by
    rows: int
    candidate: float | None = None
    # None while the name has no champion yet (then min/max alone decided).
    champion: float | None = None
    champion_version: int | None = None
    champion_model_id: str | None = None
    passed: bool  # whether the candidate was promoted to champion
    reason: str


class FeatureImportance(APIObject):
    feature: str
    gain: float
    split: int


class Coefficient(APIObject):
    """One weight of a linear model, on its standardized feature."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    feature: str
    category: str | None = None
    # `class` on the wire: the class the weight scores (None for a regression).
    class_: Any = Field(default=None, alias="class")
    weight: float


class Model(APIObject):
    id: str
    object: Literal["model"] = "model"
    job_id: str
    dataset_id: str | None = None  # servers before 2026-12 do not send it
    task: str
    type: str
    status: Literal["deployed", "rejected", "undeployed"]
    metrics: dict[str, float]
    gate: Gate | None = None
    # With `deploy_if.beats`: the comparison that decided its promotion; else None.
    comparison: Comparison | None = None
    features: list[Feature]
    target: str
    classes: list[Any] | None = None
    # Tree models: by gain, highest first; None for networks and older servers.
    feature_importance: list[FeatureImportance] | None = None
    coefficients: list[Coefficient] | None = None
    # Set when the job's spec had `model_name`; None otherwise and on older servers.
    model_name: str | None = None
    version: int | None = None
    created_at: int


class ModelVersion(APIObject):
    version: int
    model_id: str
    job_id: str
    status: Literal["deployed", "rejected", "undeployed"]
    metrics: dict[str, float]
    gate: Gate | None = None
    comparison: Comparison | None = None
    # The aliases naming this version (`champion`, `staging`); empty on older servers.
    aliases: list[str] = Field(default_factory=list)
    created_at: int


class ModelAlias(APIObject):
    """An alias of a named model (`champion`, or one of the caller's own) and the version
    it names now."""

    alias: str
    version: int
    model_id: str
    # Who moved it last: an API key's id (`key_…`), or the job (`job_…`) whose champion
    # gate promoted the version.
    set_by: str
    reason: str | None = None
    updated_at: int


class ModelAliasChange(APIObject):
    """One move of an alias: `from_version` is None for a new alias, `to_version` None
    for a deleted one."""

    id: str
    object: Literal["model_alias_change"] = "model_alias_change"
    alias: str
    from_version: int | None = None
    to_version: int | None = None
    set_by: str
    reason: str | None = None
    created_at: int


class ModelNameSummary(APIObject):
    id: str
    object: Literal["model_name"] = "model_name"
    name: str
    latest_version: int
    created_at: int
    updated_at: int


class ModelName(ModelNameSummary):
    """A named model: every version its jobs added, oldest first, and its aliases."""

    versions: list[ModelVersion]
    # By alias name; empty on servers before aliases.
    aliases: list[ModelAlias] = Field(default_factory=list)


class Prediction(APIObject):
    object: Literal["prediction"] = "prediction"
    model_id: str
    predictions: list[Any]
    probabilities: list[dict[str, float]] | None = None


class BatchPrediction(APIObject):
    """A whole dataset predicted on a worker; `rows` once `succeeded`."""

    id: str
    object: Literal["batch_prediction"] = "batch_prediction"
    model_id: str
    dataset_id: str
    status: Literal["queued", "running", "succeeded", "failed"]
    rows: int | None = None
    error: str | None = None
    created_at: int
    finished_at: int | None = None

    @property
    def done(self) -> bool:
        return self.status in BATCH_TERMINAL


Item = TypeVar("Item", bound=BaseModel)


class Page(APIObject, Generic[Item]):
    """One page of a list: `{"object": "list", "data": [...], "has_more": bool}`."""

    object: Literal["list"] = "list"
    data: list[Item]
    has_more: bool
