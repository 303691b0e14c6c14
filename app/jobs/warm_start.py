"""Warm starts (`init_from`): which model a job starts from, and whether it can.

A warm-started job trains on from the model's parameters, through the model's own
fitted preprocessing (the same means, deviations, categories and bins): parameters
learnt on standardised inputs mean nothing on inputs standardised otherwise. So the
job must read the same columns, predict the same target for the same task, and ask
for the same preprocessing and the same shape of model; each difference is named.
"""

from typing import Any

from sqlalchemy.orm import Session

from app.errors import APIError
from app.jobs.repository import JobRepository
from app.jobs.spec import TREES, JobSpec
from app.model_names.repository import ModelAliasRepository, ModelNameRepository
from app.registry.repository import ModelRepository
from app.tables import RegisteredModel
from app.tenancy.scope import Scope

PARAM = "init_from.model"


class WarmStartError(ValueError):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


def resolve_init_model(session: Session, tenant_id: str, reference: str) -> RegisteredModel:
    """The model `mdl_…`, `name@alias` or `name@version` names now; 404 otherwise."""
    scope = Scope.tenant(tenant_id)
    model_id: str | None = reference
    if "@" in reference:
        name, handle = reference.split("@", 1)
        if handle.isdigit():
            model_id = ModelNameRepository(session, scope).version_id(name, int(handle))
            missing = f"Model {name!r} has no version {handle}."
        else:
            model_id = ModelAliasRepository(session, scope).model_id(name, handle)
            missing = f"Model {name!r} has no alias {handle!r}."
        if model_id is None:
            raise APIError(404, "not_found", missing, PARAM)
    model = ModelRepository(session, scope).get(model_id) if model_id else None
    if model is None:
        raise APIError(404, "not_found", f"No model with id {reference!r}.", PARAM)
    return model


def init_spec(session: Session, model: RegisteredModel) -> JobSpec | None:
    """The spec of the job that trained `model` (None if that job was deleted)."""
    job = JobRepository(session, Scope.tenant(model.tenant_id)).get(model.job_id)
    return JobSpec.stored(job.spec) if job is not None else None


def check_warm_start(
    spec: JobSpec,
    model: RegisteredModel,
    trained_with: JobSpec | None,
    dtypes: dict[str, str],
    task: str,
) -> None:
    """Raise WarmStartError naming the first difference between this job and `model`."""
    if model.task != task:
        raise WarmStartError("task", f"{_named(model)} is a {model.task} model; this job is {task}")
    if model.type != spec.model.type:
        raise WarmStartError(
            "model.type", f"{_named(model)} is a {model.type}; this job trains a {spec.model.type}"
        )
    if model.target != spec.target:
        raise WarmStartError(
            "target",
            f"{_named(model)} predicts {model.target!r}; this job's target is {spec.target!r}",
        )
    features = spec.features or [n for n in dtypes if n != spec.target]
    theirs = {f["name"]: f["dtype"] for f in model.features}
    missing = [n for n in theirs if n not in features]
    if missing:
        raise WarmStartError(
            "features", f"{_named(model)} reads column {missing[0]!r}, which this job does not"
        )
    extra = [n for n in features if n not in theirs]
    if extra:
        raise WarmStartError(
            "features",
            f"this job trains on column {extra[0]!r}, which {_named(model)} does not read",
        )
    for name, dtype in theirs.items():
        if (dtype == "string") != (dtypes.get(name) == "string"):
            raise WarmStartError(
                "features",
                f"column {name!r} is {dtypes.get(name)} in this dataset and {dtype} for "
                f"{_named(model)}",
            )
    if trained_with is None:
        if model.type == TREES:
            raise WarmStartError(
                PARAM,
                f"{_named(model)}: the job that trained it was deleted, and with it the "
                "bin edges its trees split on",
            )
        return
    for section in ("preprocessing", "model"):
        difference = _first_difference(
            _shape(section, getattr(trained_with, section)), _shape(section, getattr(spec, section))
        )
        if difference is not None:
            field, theirs_value, ours = difference
            raise WarmStartError(
                f"{section}.{field}",
                f"{_named(model)} was trained with {section}.{field} {theirs_value!r}; this "
                f"job asks for {ours!r}",
            )


# What must match for the parameters to mean the same: a network's layers (dropout is
# a layer of its own in the parameters' names), the depth and bins of trees. Learning
# rates, rounds, L1/L2 and tree counts may change.
_SHAPE_FIELDS = {
    "mlp": ("hidden_layers", "activation", "dropout"),
    "gradient_boosted_trees": ("max_depth", "max_bins"),
}


def _shape(section: str, value: Any) -> dict[str, Any]:
    dumped = value.model_dump(mode="json")
    if section == "preprocessing":
        return dict(dumped)
    kept = _SHAPE_FIELDS.get(dumped["type"], ())
    return {k: dumped[k] for k in kept if k in dumped}


def _first_difference(theirs: dict[str, Any], ours: dict[str, Any]) -> tuple[str, Any, Any] | None:
    for key in sorted(set(theirs) | set(ours)):
        if theirs.get(key) != ours.get(key):
            return key, theirs.get(key), ours.get(key)
    return None


def _named(model: RegisteredModel) -> str:
    if model.model_name is not None:
        return f"model {model.id} ({model.model_name} version {model.version})"
    return f"model {model.id}"
