"""Starting a sweep's jobs: a trial's (one per fold with cross-validation) and the
final one that delivers the best trial's settings. Each job trains on the shards of
the first job of the sweep that prepared the same data, so a sweep prepares once per
encoding (and per fold), whatever its trial count."""

import copy
from dataclasses import dataclass
from typing import Any

from pydantic import JsonValue
from sqlalchemy.orm import Session

from app.dispatch import Dispatcher
from app.jobs.service import queue_job
from app.jobs.spec import GradientBoostedTreesSpec, JobSpec
from app.sweeps.space import trial_spec
from app.sweeps.spec import SweepSpec
from app.tables import Job, Sweep
from app.tables.statuses import JOB_ACTIVE


@dataclass(frozen=True)
class Preparation:
    """What a job's prepared parts depend on beyond what every job of a sweep shares."""

    trees: bool
    max_bins: int | None
    fold: int | None


def preparation_of(spec: JobSpec) -> Preparation:
    model = spec.model
    return Preparation(
        trees=spec.is_trees,
        max_bins=model.max_bins if isinstance(model, GradientBoostedTreesSpec) else None,
        fold=spec.validation.cv_fold,
    )


class Wait:
    """The job that prepares these parts is still at it: its shards come soon."""


WAIT = Wait()


def source_for(jobs: list[Job], wanted: Preparation) -> Job | Wait | None:
    """The sweep's job whose shards a new job with `wanted` trains on; WAIT while it is
    still preparing them; None when no job has them (the new job prepares its own)."""
    for job in jobs:
        if job.shards_from is not None or preparation_of(JobSpec.stored(job.spec)) != wanted:
            continue
        if job.plan is not None:
            return job
        if job.status in JOB_ACTIVE:
            return WAIT
    return None


def fold_specs(spec: JobSpec, folds: int | None) -> list[JobSpec]:
    """The trial's jobs: the spec itself, or one per cross-validation fold."""
    if folds is None:
        return [spec]
    return [
        spec.model_copy(
            update={
                "validation": spec.validation.model_copy(
                    update={"cv_folds": folds, "cv_fold": fold}
                )
            }
        )
        for fold in range(folds)
    ]


def final_spec(spec: SweepSpec, params: dict[str, JsonValue]) -> JobSpec:
    """The best trial's settings with what applies to the sweep's result alone: the
    template's model name and gate."""
    trial = trial_spec(spec.template, params)
    kept = {
        k: copy.deepcopy(spec.template[k])
        for k in ("model_name", "deploy_if")
        if k in spec.template
    }
    return JobSpec.model_validate({**trial.model_dump(mode="json"), **kept})


def needs_final_job(spec: SweepSpec) -> bool:
    """A trial's own model is the result unless the template names a model or a gate,
    or the trials trained on folds (the result trains on all of them)."""
    return spec.cv_folds is not None or any(k in spec.template for k in ("model_name", "deploy_if"))


def start_jobs(
    session: Session,
    dispatcher: Dispatcher,
    sweep: Sweep,
    specs: list[JobSpec],
    jobs: list[Job],
    task: str | None,
    trial: int | None,
) -> list[Job] | Wait:
    """Queue one job per spec on the shards it can share, or WAIT (queuing none) while
    one of them is still being prepared. `trial` None marks the final job."""
    sources: list[Job | None] = []
    for spec in specs:
        source = source_for(jobs, preparation_of(spec))
        if isinstance(source, Wait):
            return WAIT
        sources.append(source)
    started: list[Job] = []
    for spec, source in zip(specs, sources, strict=True):
        body: dict[str, Any] = spec.model_dump(mode="json")
        started.append(
            queue_job(
                session,
                dispatcher,
                Job(
                    tenant_id=sweep.tenant_id,
                    dataset_id=sweep.dataset_id,
                    spec=body,
                    task=task,
                    rounds=spec.rounds,
                    shards_from=source.id if source is not None else None,
                    sweep_id=sweep.id,
                    sweep_trial=trial,
                ),
            )
        )
    return started
