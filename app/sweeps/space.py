"""Where a sweep's values go: a trial's job spec is the template with them set, and a
space is refused (naming the dimension) unless every value it can draw makes a spec
that `POST /v1/jobs` would take.

Trials share one preparation of the data (the shards, the fitted preprocessing), so a
dimension may not touch what decides it: the dataset, target, features, task,
preprocessing, validation split, shard count and seed. Nor the sweep's own business:
the gate, the model name and warm starts apply to the best trial, not to each.
"""

import copy
from typing import Any

from pydantic import BaseModel, JsonValue, ValidationError

from app.jobs.spec import (
    NOT_FOR_TREES,
    TREES,
    DistributionSpec,
    GradientBoostedTreesSpec,
    JobSpec,
    ModelSpec,
    TrainingSpec,
)
from app.sweeps.spec import Choice, IntRange, LogUniform, SweepSpec, Uniform

SECTIONS: dict[str, type[BaseModel]] = {
    "training": TrainingSpec,
    "distribution": DistributionSpec,
}
# What the shared preparation depends on, or what a distribution must not vary.
FIXED_FIELDS = {"training.seed", "distribution.shards", "distribution.device"}
# Applied once, to the sweep's best trial; never to each trial.
SWEEP_ONLY = ("model_name", "deploy_if", "init_from")
MODEL_CLASSES: dict[str, type[BaseModel]] = {
    "logistic_regression": ModelSpec,
    "linear_regression": ModelSpec,
    "mlp": ModelSpec,
    TREES: GradientBoostedTreesSpec,
}


class SpaceError(ValueError):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


def trial_spec(template: dict[str, Any], params: dict[str, JsonValue]) -> JobSpec:
    """The template with `params` set: a whole `model` block first, then its fields.
    A value that does not apply to the trial's model (a network's `training.l2` when the
    `model` choice drew trees, a tree field for a network) is left out, as the job
    would refuse it; so is the template's own network training when trees are drawn."""
    body = {k: copy.deepcopy(v) for k, v in template.items() if k not in SWEEP_ONLY}
    if "model" in params:
        body["model"] = copy.deepcopy(params["model"])
    model = body.setdefault("model", {})
    kind = model.get("type", "logistic_regression") if isinstance(model, dict) else None
    if kind == TREES and "model" in params:
        for section, names in NOT_FOR_TREES.items():
            given = body.get(section)
            if isinstance(given, dict) and section != "preprocessing":
                for name in names:
                    given.pop(name, None)
    for key, value in params.items():
        if key == "model":
            continue
        section, field = key.split(".", 1)
        if section == "model" and not _model_has(kind, field):
            continue
        if kind == TREES and field in NOT_FOR_TREES.get(section, ()):
            continue
        target = body.setdefault(section, {})
        if isinstance(target, dict):
            target[field] = copy.deepcopy(value)
    return JobSpec.model_validate(body)


def _model_has(kind: str | None, field: str) -> bool:
    model_class = MODEL_CLASSES.get(kind or "")
    return model_class is not None and field in model_class.model_fields


def corner_values(dimension: Any) -> list[JsonValue]:
    """The values a dimension can draw that bound every other: its ends, or each choice."""
    if isinstance(dimension, LogUniform):
        return list(dimension.log_uniform)
    if isinstance(dimension, Uniform):
        return list(dimension.uniform)
    if isinstance(dimension, IntRange):
        return list(dimension.int)
    assert isinstance(dimension, Choice)
    return list(dimension.choice)


def check_sweep(spec: SweepSpec) -> None:
    """Raise SpaceError naming the template field or the dimension that cannot run."""
    try:
        template = JobSpec.model_validate(spec.template)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise SpaceError(f"template.{where}" if where else "template", error["msg"]) from None
    kinds: set[str] = {template.model.type}
    if "model" in spec.space:
        blocks = corner_values(spec.space["model"])
        if not isinstance(spec.space["model"], Choice) or not all(
            isinstance(b, dict) for b in blocks
        ):
            raise SpaceError("space.model", "model is drawn whole: {choice: [model blocks]}")
        kinds = {str(b.get("type", "logistic_regression")) for b in blocks if isinstance(b, dict)}
    for key, dimension in spec.space.items():
        _check_key(key, kinds)
        for value in corner_values(dimension):
            try:
                trial_spec(spec.template, {key: value})
            except ValidationError as exc:
                error = exc.errors()[0]
                where = ".".join(str(p) for p in error["loc"])
                raise SpaceError(
                    f"space.{key}", f"{value!r} makes an invalid spec: {where}: {error['msg']}"
                ) from None


def _check_key(key: str, kinds: set[str]) -> None:
    param = f"space.{key}"
    if key == "model":
        return
    section, _, field = key.partition(".")
    if key in FIXED_FIELDS or section not in (*SECTIONS, "model"):
        raise SpaceError(
            param,
            f"{key} decides the data every trial shares (or is the sweep's own): set it "
            "in the template; a sweep varies model, training and distribution settings",
        )
    if not field or "." in field:
        raise SpaceError(param, "a dimension names one field: section.field, or model")
    if section == "model":
        if not any(_model_has(kind, field) for kind in kinds):
            raise SpaceError(param, f"no model this sweep trains has a field {field!r}")
        return
    if field not in SECTIONS[section].model_fields:
        raise SpaceError(param, f"{section} has no field {field!r}")
