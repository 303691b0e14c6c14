"""The prepare stage: check the job's dataset and spec, write its shards and round 0's
state with no transaction open, then move the job to round 1."""

import time
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy.orm import Session

from app.config import get_settings
from app.datasets.repository import DatasetRepository
from app.jobs.checkpoints import load_checkpoint, save_checkpoint
from app.jobs.learners import policy_for
from app.jobs.lifecycle import fail, transition
from app.jobs.repository import JobRepository
from app.jobs.service import SpecError, check_spec
from app.jobs.sharding import Reused, ShardingError, ShardPlan, build_shards
from app.jobs.shared_shards import shared_plan
from app.jobs.spec import TREES, JobSpec
from app.jobs.stages.next_step import NextStep, await_round
from app.jobs.warm_start import WarmStartError, check_warm_start, init_spec
from app.paramstore import ParamStore
from app.registry.artifact import Artifact, read_artifact
from app.registry.repository import ModelRepository
from app.storage import BlobStore
from app.tables import Dataset
from app.tables.statuses import DatasetStatus, JobStatus
from app.tenancy.limits import limits_for
from app.tenancy.scope import SYSTEM, Scope
from app.training.trees.ensemble import TreeEnsemble
from app.training.trees.policy import edges_of

PrepareStep = Literal["skip", "wait", "failed", "build"]


def begin_prepare(
    session: Session, job_id: str, *, max_wait_s: float | None = None, now: float | None = None
) -> PrepareStep:
    """Check the job's dataset and spec. A dataset still being ingested is waited for
    ("wait") for at most `max_wait_s` from the job's creation, then the job fails: an
    ingest that never ends must not leave its jobs queued forever."""
    job = JobRepository(session, SYSTEM).get(job_id, for_update=True)
    if job is None or job.status not in (JobStatus.QUEUED, JobStatus.PREPARING):
        return "skip"
    dataset = DatasetRepository(session, Scope.tenant(job.tenant_id)).get(job.dataset_id)
    if dataset is None or dataset.status == DatasetStatus.FAILED:
        reason = dataset.error if dataset else "it was deleted"
        fail(job, "dataset_not_ready", f"dataset {job.dataset_id} is unusable: {reason}")
        return "failed"
    if dataset.status != DatasetStatus.READY:
        waited = (time.time() if now is None else now) - (job.stage_started_at or job.created_at)
        if max_wait_s is not None and job.status == JobStatus.QUEUED and waited > max_wait_s:
            fail(
                job,
                "dataset_not_ready",
                f"dataset {job.dataset_id} was still {dataset.status} after {waited:.0f} s "
                f"of waiting (the limit is {max_wait_s:.0f} s); its ingest did not finish",
            )
            return "failed"
        return "wait"
    spec = JobSpec.stored(job.spec)
    try:
        job.task = check_spec(spec, dataset.columns or [], dataset.rows or 0)
    except SpecError as exc:
        fail(job, "invalid_spec", f"{exc.param}: {exc.message}")
        return "failed"
    if job.init_model_id is not None:
        why = _warm_start_problem(
            session, job.tenant_id, job.init_model_id, spec, dataset, job.task
        )
        if why is not None:
            fail(job, *why)
            return "failed"
    if job.status == JobStatus.QUEUED:
        transition(job, JobStatus.PREPARING)
        # The watchdog's clock for this stage starts now, not when the job was queued:
        # time spent waiting for an ingest is not a stalled prepare.
        job.stage_started_at = time.time()
    return "build"


def _warm_start_problem(
    session: Session,
    tenant_id: str,
    model_id: str,
    spec: JobSpec,
    dataset: Dataset,
    task: str,
) -> tuple[str, str] | None:
    """Checked again here: the dataset may have had no columns when the job was created,
    and the model may have been deleted since."""
    model = ModelRepository(session, Scope.tenant(tenant_id)).get(model_id)
    if model is None:
        return "init_model_missing", f"init_from: model {model_id} was deleted"
    dtypes = {c["name"]: c["dtype"] for c in dataset.columns or []}
    try:
        check_warm_start(spec, model, init_spec(session, model), dtypes, task)
    except WarmStartError as exc:
        return "invalid_spec", f"{exc.param}: {exc.message}"
    return None


@dataclass(frozen=True)
class BuildInput:
    """What writing a job's shards needs, read in a short transaction so that none is
    open while the shards are written (minutes, for a large dataset)."""

    job_id: str
    data_key: str
    spec: JobSpec
    columns: list[dict[str, Any]]
    task: str
    max_parameters: int
    # A warm start's model artifact (its preprocessing and parameters are round 0's),
    # and the job that trained it (whose round 0 holds a tree model's bin edges).
    init_artifact_key: str | None = None
    init_job_id: str | None = None
    # Another job's prepared shards, which this one trains on (`jobs.shards_from`).
    source_id: str | None = None
    source_spec: JobSpec | None = None
    source_plan: dict[str, Any] | None = None


def read_build_input(session: Session, job_id: str) -> BuildInput | None:
    job = JobRepository(session, SYSTEM).get(job_id)
    if job is None or job.status != JobStatus.PREPARING:
        return None
    dataset = DatasetRepository(session, Scope.tenant(job.tenant_id)).get(job.dataset_id)
    assert dataset is not None and dataset.data_key is not None and job.task is not None
    init = (
        ModelRepository(session, SYSTEM).get(job.init_model_id)
        if job.init_model_id is not None
        else None
    )
    source = (
        JobRepository(session, SYSTEM).get(job.shards_from) if job.shards_from is not None else None
    )
    return BuildInput(
        job_id=job.id,
        data_key=dataset.data_key,
        spec=JobSpec.stored(job.spec),
        columns=dataset.columns or [],
        task=job.task,
        max_parameters=limits_for(session, get_settings(), job.tenant_id).max_parameters,
        init_artifact_key=init.artifact_key if init is not None else None,
        init_job_id=init.job_id if init is not None else None,
        source_id=job.shards_from,
        source_spec=JobSpec.stored(source.spec) if source is not None else None,
        source_plan=source.plan if source is not None else None,
    )


def write_shards(
    store: BlobStore, params: ParamStore, work: BuildInput
) -> ShardPlan | ShardingError:
    """The shards and round 0's parameters, written by key (a second run writes the same
    files); a ShardingError comes back, for `record_shards` to fail the job with."""
    init = (
        read_artifact(store.path(work.init_artifact_key))
        if work.init_artifact_key is not None
        else None
    )
    try:
        plan = _plan(store, work, init)
    except ShardingError as exc:
        return exc
    policy = policy_for(work.spec, work.task, plan)
    state = policy.warm_state(init.state) if init is not None else policy.initial_state()
    save_checkpoint(store, work.job_id, 0, state)
    params.put_global(work.job_id, 0, state)
    return plan


def _plan(store: BlobStore, work: BuildInput, init: Artifact | None) -> ShardPlan:
    """This job's shards, written here, or another job's, shared (`jobs.shards_from`)."""
    if work.source_id is not None:
        if work.source_plan is None or work.source_spec is None:
            raise ShardingError(
                f"job {work.source_id}, whose shards this job trains on, has none",
                code="invalid_spec",
            )
        return shared_plan(
            store, work.spec, work.source_id, work.source_spec, work.source_plan,
            work.max_parameters,
        )  # fmt: skip
    return build_shards(
        store,
        job_id=work.job_id,
        data_key=work.data_key,
        spec=work.spec,
        columns=work.columns,
        task=work.task,
        max_parameters=work.max_parameters,
        reused=_reused(store, work, init) if init is not None else None,
    )


def _reused(store: BlobStore, work: BuildInput, init: Artifact) -> Reused:
    if init.network.type != TREES:
        return Reused(init.preprocessor)
    assert work.init_job_id is not None
    first = load_checkpoint(store, work.init_job_id, 0)
    if first is None:
        raise ShardingError(
            f"init_from: the bin edges the model's trees split on were kept with its job "
            f"{work.init_job_id}, whose files are gone; train from scratch",
            code="invalid_spec",
        )
    base_score = TreeEnsemble.from_state(init.state).base_score
    return Reused(init.preprocessor, edges=edges_of(first), base_score=base_score.tolist())


def record_shards(session: Session, work: BuildInput, built: ShardPlan | ShardingError) -> NextStep:
    """Move the job to round 1, unless it changed meanwhile (a cancel) or sharding failed."""
    job = JobRepository(session, SYSTEM).get(work.job_id, for_update=True)
    if job is None or job.status != JobStatus.PREPARING:
        return NextStep("none")
    if isinstance(built, ShardingError):
        fail(job, built.code, str(built))
        return NextStep("none")
    job.plan = built.to_dict()
    job.current_round = 0
    transition(job, JobStatus.RUNNING)
    return await_round(job, 1, built.shards, work.spec)


def build_job_shards(
    session: Session, store: BlobStore, params: ParamStore, job_id: str
) -> NextStep:
    """Read, write the shards, record, in one session: for in-process callers. The
    worker runs the three steps with a short session around each SQL step."""
    work = read_build_input(session, job_id)
    if work is None:
        return NextStep("none")
    return record_shards(session, work, write_shards(store, params, work))
