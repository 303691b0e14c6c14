"""The last stage: score the kept round on the holdout, register the model, apply the gate."""

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from app.jobs.checkpoints import load_checkpoint
from app.jobs.events import record_event
from app.jobs.learners import policy_for
from app.jobs.lifecycle import fail, transition
from app.jobs.part_files import load_part
from app.jobs.plan import ShardPlan
from app.jobs.repository import JobRepository
from app.jobs.spec import JobSpec
from app.registry.artifact import write_artifact
from app.registry.service import register_model
from app.storage import BlobStore, keys
from app.tables import Job
from app.tables.base import new_id
from app.tables.statuses import JobStatus
from app.tenancy.scope import SYSTEM


@dataclass(frozen=True)
class FinalizeInput:
    job_id: str
    tenant_id: str
    kept_round: int
    plan: ShardPlan
    task: str
    spec: JobSpec


@dataclass(frozen=True)
class Scored:
    """The kept round scored on the holdout and written as an artifact, with no SQL
    open; `record_model` registers it."""

    input: FinalizeInput
    model_id: str = ""
    artifact_key: str = ""
    failure: tuple[str, str] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    gate: dict[str, Any] | None = None
    # Why the model has no holdout score at all, when it has none.
    unscored: str | None = None
    feature_importance: list[dict[str, Any]] | None = None


def importance_by_column(
    importance: dict[str, np.ndarray] | None, columns: list[str]
) -> list[dict[str, Any]] | None:
    """The learner's per-feature measures on the dataset's column names, by gain. Tree
    features are the columns themselves (ordinal encoding), one to one."""
    if importance is None:
        return None
    gain, split = importance["gain"], importance["split"]
    rows = [
        {"feature": name, "gain": float(gain[i]), "split": int(split[i])}
        for i, name in enumerate(columns)
    ]
    return sorted(rows, key=lambda row: (-row["gain"], -row["split"], row["feature"]))


def read_finalize_input(session: Session, job_id: str) -> FinalizeInput | None:
    job = JobRepository(session, SYSTEM).get(job_id)
    if not _finalize_fence(job):
        return None
    assert job is not None and job.plan is not None and job.task is not None
    # Early stopping keeps the best round, not the last one trained.
    kept_round = job.best_round if job.best_round is not None else job.current_round
    return FinalizeInput(
        job_id=job_id,
        tenant_id=job.tenant_id,
        kept_round=kept_round,
        plan=ShardPlan.from_dict(job.plan),
        task=job.task,
        spec=JobSpec.stored(job.spec),
    )


def _finalize_fence(job: Job | None) -> bool:
    return job is not None and job.status == JobStatus.RUNNING and job.model_id is None


def score_and_write(store: BlobStore, work: FinalizeInput) -> Scored:
    job_id, kept_round, spec = work.job_id, work.kept_round, work.spec
    state = load_checkpoint(store, job_id, kept_round)
    if state is None:
        return Scored(
            work, failure=("checkpoint_lost", f"the checkpoint of round {kept_round} is missing")
        )
    holdout = load_part(store, work.plan.holdout_key)
    policy = policy_for(spec, work.task, work.plan)
    evaluation = policy.evaluate(state, holdout.features, holdout.targets)
    metrics = evaluation.metrics if evaluation else {}
    unavailable = evaluation.unavailable if evaluation else {}

    gate = None
    if spec.deploy_if is not None:
        value = metrics.get(spec.deploy_if.metric)
        missing = (
            unavailable.get(spec.deploy_if.metric)
            if evaluation is not None
            else "the holdout has no rows to score"
        )
        reason = spec.deploy_if.rejection(value, missing)
        gate = {
            **spec.deploy_if.model_dump(),
            "value": value,
            "passed": reason is None,
            "reason": reason,
        }

    # A second run writes a second artifact under a new id; only one is registered.
    model_id = new_id("mdl")
    artifact_key = keys.model_artifact(model_id)
    with store.temporary_path(artifact_key) as tmp:
        write_artifact(
            tmp,
            state=policy.model_state(state),
            network=work.plan.network,
            preprocessor=work.plan.preprocessor,
            task=work.task,
            extra={"model_id": model_id, "job_id": job_id, "round": kept_round, "metrics": metrics},
        )
    return Scored(
        work,
        model_id=model_id,
        artifact_key=artifact_key,
        metrics=metrics,
        unavailable=unavailable,
        gate=gate,
        feature_importance=importance_by_column(
            policy.feature_importance(state), work.plan.preprocessor.columns
        ),
        unscored=None
        if evaluation is not None
        else "the job has no holdout rows (validation.holdout_fraction: "
        f"{spec.validation.holdout_fraction}), so the model has no holdout metrics",
    )


def record_model(session: Session, scored: Scored) -> bool:
    """Register the model and end the job, under the row lock, unless another finalize
    or a cancel got there first. True when this call registered it."""
    work = scored.input
    job_id = work.job_id
    job = JobRepository(session, SYSTEM).get(job_id, for_update=True)
    if not _finalize_fence(job):
        return False
    assert job is not None
    if scored.failure is not None:
        fail(job, *scored.failure)
        return False
    metrics, unavailable, gate = scored.metrics, scored.unavailable, scored.gate
    if unavailable:
        listed = "; ".join(f"{name}: {why}" for name, why in unavailable.items())
        record_event(
            session,
            job_id,
            "metrics.unavailable",
            f"holdout metric(s) could not be computed: {listed}",
            level="warning",
            unavailable=unavailable,
        )
    model_id = scored.model_id
    register_model(
        session,
        model_id=model_id,
        job_id=job_id,
        tenant_id=work.tenant_id,
        task=work.task,
        model_type=work.plan.network.type,
        preprocessor=work.plan.preprocessor,
        artifact_key=scored.artifact_key,
        metrics=metrics,
        gate=gate,
        feature_importance=scored.feature_importance,
        model_name=work.spec.model_name,
    )
    job.model_id = model_id
    if scored.unscored is not None:
        # Said outright: `{"split": "holdout"}` with no values read as a lost score.
        job.metrics = {"round": work.kept_round, "split": "none", "reason": scored.unscored}
    else:
        job.metrics = {"round": work.kept_round, "split": "holdout", **metrics}
    if unavailable:
        job.metrics["unavailable"] = unavailable
    transition(job, JobStatus.SUCCEEDED)
    return True


def finalize_job(session: Session, store: BlobStore, job_id: str) -> bool:
    """Read, score, record in one session: for in-process callers. The worker runs the
    steps with a short session around each SQL step. True when this call registered
    the model (False: nothing to do)."""
    work = read_finalize_input(session, job_id)
    if work is None:
        return False
    return record_model(session, score_and_write(store, work))
