"""The last stage: score the kept round on the holdout, register the model, apply the gate."""

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from app.datasets.repository import DatasetRepository
from app.jobs.checkpoints import load_checkpoint
from app.jobs.events import record_event
from app.jobs.learners import policy_for
from app.jobs.lifecycle import fail, transition
from app.jobs.part_files import load_part
from app.jobs.plan import ShardPlan
from app.jobs.repository import JobRepository
from app.jobs.spec import JobSpec
from app.jobs.stages.champion import (
    ChampionMoved,
    ChampionRef,
    compare,
    first_version,
    holdout_table,
    not_compared,
    read_champion,
    settle_champion,
)
from app.model_names.resolution import AliasGenerations
from app.registry.artifact import write_artifact
from app.registry.coefficients import linear_coefficients
from app.registry.predictor import Predictor
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
    # The champion gate's: the champion compared against (None: none yet), and the
    # dataset its holdout rows are read from, raw, with its columns' dtypes.
    champion: ChampionRef | None = None
    data_key: str | None = None
    dtypes: dict[str, str] = field(default_factory=dict)


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
    coefficients: list[dict[str, Any]] | None = None
    comparison: dict[str, Any] | None = None


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
    spec = JobSpec.stored(job.spec)
    champion, data_key, dtypes = None, None, {}
    if spec.deploy_if is not None and spec.deploy_if.beats is not None and spec.model_name:
        champion = read_champion(session, job.tenant_id, spec.model_name)
        dataset = DatasetRepository(session, SYSTEM).get(job.dataset_id)
        if dataset is not None:
            data_key = dataset.data_key
            dtypes = {c["name"]: c["dtype"] for c in dataset.columns or []}
    return FinalizeInput(
        job_id=job_id,
        tenant_id=job.tenant_id,
        kept_round=kept_round,
        plan=ShardPlan.from_dict(job.plan),
        task=job.task,
        spec=spec,
        champion=champion,
        data_key=data_key,
        dtypes=dtypes,
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

    # A second run writes a second artifact under a new id; only one is registered.
    model_id = new_id("mdl")
    artifact_key = keys.model_artifact(model_id)
    gate, comparison = None, None
    with store.temporary_path(artifact_key) as tmp:
        write_artifact(
            tmp,
            state=policy.model_state(state),
            network=work.plan.network,
            preprocessor=work.plan.preprocessor,
            task=work.task,
            extra={"model_id": model_id, "job_id": job_id, "round": kept_round, "metrics": metrics},
        )
        if spec.deploy_if is not None:
            missing = (
                unavailable.get(spec.deploy_if.metric)
                if evaluation is not None
                else "the holdout has no rows to score"
            )
            gate, comparison = decide_gate(store, work, tmp, metrics, missing)
    return Scored(
        work,
        model_id=model_id,
        artifact_key=artifact_key,
        metrics=metrics,
        unavailable=unavailable,
        gate=gate,
        comparison=comparison,
        feature_importance=importance_by_column(
            policy.feature_importance(state), work.plan.preprocessor.columns
        ),
        coefficients=linear_coefficients(
            work.plan.network.type, policy.model_state(state), work.plan.preprocessor
        ),
        unscored=None
        if evaluation is not None
        else "the job has no holdout rows (validation.holdout_fraction: "
        f"{spec.validation.holdout_fraction}), so the model has no holdout metrics",
    )


def decide_gate(
    store: BlobStore,
    work: FinalizeInput,
    artifact: Path,
    metrics: dict[str, float],
    missing: str | None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The gate's decision and, for the champion gate, the head-to-head behind it."""
    gate = work.spec.deploy_if
    assert gate is not None
    value = metrics.get(gate.metric)
    reason = gate.rejection(value, missing)
    comparison = None
    if gate.beats is not None:
        if work.champion is None:
            comparison = first_version(gate, value, work.plan.holdout_rows)
        else:
            comparison = _head_to_head(store, work, artifact)
            if reason is None and not comparison["passed"]:
                reason = comparison["reason"]
        comparison["passed"] = comparison["passed"] and reason is None
    decision = {
        **gate.stored_decision(),
        "value": value,
        "passed": reason is None,
        "reason": reason,
    }
    return decision, comparison


def _head_to_head(store: BlobStore, work: FinalizeInput, artifact: Path) -> dict[str, Any]:
    gate, champion, spec = work.spec.deploy_if, work.champion, work.spec
    assert gate is not None and champion is not None
    if work.data_key is None:
        return not_compared(gate, champion, "the job's dataset is gone")
    candidate = Predictor(artifact)
    names = [f["name"] for f in candidate.preprocessor.feature_schema]
    wanted = [f["name"] for f in champion.features if f["name"] in work.dtypes]
    columns = list(dict.fromkeys([*names, *wanted, spec.target]))
    table = holdout_table(store.path(work.data_key), spec, columns, work.task)
    return compare(
        gate,
        candidate,
        champion,
        store.path(champion.artifact_key),
        table,
        spec.target,
        work.dtypes,
    )


def record_model(
    session: Session, scored: Scored, generations: AliasGenerations | None = None
) -> bool:
    """Register the model and end the job, under the row lock, unless another finalize
    or a cancel got there first. True when this call registered it. Raises
    `ChampionMoved` (having written nothing) when the champion gate compared against a
    champion that is no longer the one."""
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
    model = register_model(
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
        comparison=scored.comparison,
        feature_importance=scored.feature_importance,
        coefficients=scored.coefficients,
        model_name=work.spec.model_name,
        deploy=job.sweep_trial is None,
    )
    if scored.comparison is not None:
        settle_champion(session, generations, job_id, work.champion, model, scored.comparison)
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


def finalize_job(
    session: Session, store: BlobStore, job_id: str, generations: AliasGenerations | None = None
) -> bool:
    """Read, score, record in one session: for in-process callers. The worker runs the
    steps with a short session around each SQL step. True when this call registered
    the model (False: nothing to do)."""
    work = read_finalize_input(session, job_id)
    if work is None:
        return False
    return record_model(session, score_and_write(store, work), generations)


# Each race lost to another candidate of the same name costs one comparison more; past
# this many in a row the task fails and is redelivered like any other failure.
MAX_CHAMPION_RACES = 5


def finalize_in_steps(
    open_session: Callable[[], AbstractContextManager[Session]],
    store: BlobStore,
    job_id: str,
    generations: AliasGenerations | None,
    on_recorded: Callable[[Session], None] | None = None,
) -> bool:
    """The worker's finalize: a short session to read, the scoring and the artifact
    with none open, a short session to record. A champion that moved in between means
    scoring again against the new one; the artifact of the lost race is removed."""
    for attempt in range(MAX_CHAMPION_RACES):
        with open_session() as session:
            work = read_finalize_input(session, job_id)
        if work is None:
            return False
        scored = score_and_write(store, work)
        try:
            with open_session() as session:
                recorded = record_model(session, scored, generations)
                if recorded and on_recorded is not None:
                    on_recorded(session)
            return recorded
        except ChampionMoved:
            if scored.model_id:
                store.delete_prefix(keys.model_prefix(scored.model_id))
            if attempt == MAX_CHAMPION_RACES - 1:
                raise
    return False
