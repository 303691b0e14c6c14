"""Job use cases on the API side: check a spec against its dataset, queue, read."""

import logging
import time
from typing import Any

import redis
from sqlalchemy import delete
from sqlalchemy.orm import Session

from app.datasets.repository import DatasetRepository
from app.db import enqueue_after_commit
from app.dispatch import Dispatcher
from app.errors import APIError, NotFound
from app.fleet import WorkerRegistry
from app.idempotency import IdempotencyRepository, fingerprint
from app.jobs.capacity import check_parameter_limit
from app.jobs.events import record_event
from app.jobs.lifecycle import transition
from app.jobs.plan import ShardPlan
from app.jobs.repository import JobRepository
from app.jobs.schemas import JobDeletedOut, JobError, JobOut, Progress, RoundMetricsOut
from app.jobs.spec import TREES_INSTEAD, JobSpec, metric_fits_task, resolve_task
from app.jobs.warm_start import WarmStartError, check_warm_start, init_spec, resolve_init_model
from app.outbox import send_after_commit
from app.paramstore import ParamStore
from app.registry.repository import ModelRepository
from app.storage import BlobStore, keys
from app.sweeps.triggers import step_sweep_after_commit
from app.tables import IdempotencyKey, Job, JobEvent, JobRound
from app.tables.statuses import JOB_TERMINAL, DatasetStatus, JobStatus
from app.tenancy.limits import Limits, check_job_quota
from app.tenancy.scope import SYSTEM, Scope
from app.training.split import training_rows

logger = logging.getLogger(__name__)


class SpecError(ValueError):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


def check_spec(spec: JobSpec, columns: list[dict[str, Any]], rows: int) -> str:
    """Check the spec against the dataset's columns; return the resolved task."""
    dtypes = {c["name"]: c["dtype"] for c in columns}
    if spec.target not in dtypes:
        raise SpecError("target", f"target {spec.target!r} is not a column of the dataset")
    if spec.features is not None:
        for i, name in enumerate(spec.features):
            if name not in dtypes:
                raise SpecError(f"features.{i}", f"feature {name!r} is not a column of the dataset")
        if spec.target in spec.features:
            raise SpecError("features", f"the target {spec.target!r} cannot also be a feature")
        if len(set(spec.features)) != len(spec.features):
            raise SpecError("features", "features are listed more than once")
    if not (
        spec.features if spec.features is not None else [n for n in dtypes if n != spec.target]
    ):
        raise SpecError("features", "no feature columns are left to train on")
    task = resolve_task(spec, dtypes[spec.target])
    if spec.model.type == "logistic_regression" and task != "classification":
        raise SpecError("model.type", "logistic_regression trains classification tasks only")
    if spec.model.type == "linear_regression" and task != "regression":
        raise SpecError("model.type", "linear_regression trains regression tasks only")
    if task == "regression" and dtypes[spec.target] == "string":
        raise SpecError("target", f"regression needs a numeric target; {spec.target!r} is text")
    if spec.deploy_if is not None and not metric_fits_task(spec.deploy_if.metric, task):
        raise SpecError(
            "deploy_if.metric", f"metric {spec.deploy_if.metric!r} does not score a {task} task"
        )
    if spec.deploy_if is not None and spec.validation.holdout_fraction == 0:
        raise SpecError(
            "validation.holdout_fraction", "deploy_if scores the holdout: it needs holdout rows"
        )
    # The same arithmetic as the split, so a spec accepted here cannot fail it later.
    train_rows = training_rows(
        rows,
        holdout_fraction=spec.validation.holdout_fraction,
        validation_fraction=spec.validation.validation_fraction,
        cv=spec.validation.cv,
    )
    if train_rows < spec.distribution.shards:
        raise SpecError(
            "distribution.shards",
            f"{spec.distribution.shards} shards need at least as many training rows; "
            f"the dataset leaves {train_rows} after holdout and validation",
        )
    return task


def check_applicable(spec: JobSpec) -> None:
    """A 422 naming a setting the spec's model would silently ignore."""
    field = spec.not_applicable()
    if field is not None:
        instead = TREES_INSTEAD.get(field)
        raise APIError(
            422,
            "invalid_spec",
            f"{field} does not apply to model.type {spec.model.type!r}"
            + (f"; set {instead} instead" if instead else "; leave it out"),
            field,
        )
    gate = spec.deploy_if
    if gate is not None and gate.beats is not None:
        if spec.model_name is None:
            raise APIError(
                422,
                "invalid_spec",
                "deploy_if.beats compares the model with the champion of its model_name; "
                "set model_name",
                "deploy_if.beats",
            )
        if spec.validation.holdout_fraction == 0:
            raise APIError(
                422,
                "invalid_spec",
                "deploy_if.beats scores both models on this job's holdout rows; "
                "validation.holdout_fraction must be above 0",
                "validation.holdout_fraction",
            )
    if spec.is_trees and spec.distribution.device == "cuda":
        raise APIError(
            422,
            "invalid_spec",
            "gradient_boosted_trees build their histograms on CPU; "
            "use distribution.device 'auto' or 'cpu'",
            "distribution.device",
        )


def create_job(
    session: Session,
    dispatcher: Dispatcher,
    fleet: WorkerRegistry,
    spec: JobSpec,
    tenant_id: str,
    idempotency_key: str | None = None,
    limits: Limits | None = None,
) -> Job:
    check_applicable(spec)
    body = spec.model_dump(mode="json")
    if idempotency_key is not None:
        keys = IdempotencyRepository(session, tenant_id)
        earlier = keys.find("jobs.create", idempotency_key, fingerprint(body))
        if earlier is not None:
            return get_job(session, earlier, tenant_id)
    check_parameter_limit(spec, limits)
    if limits is not None:
        check_job_quota(
            session,
            limits,
            tenant_id,
            shards=spec.distribution.shards,
            rounds=spec.quota_rounds[0],
            rounds_param=spec.quota_rounds[1],
        )
    # Unknown during a Redis outage: the job is accepted and waits on `train_gpu`
    # like any other, rather than refused for a fact nobody can check.
    if spec.distribution.device == "cuda" and fleet.gpu_available() is False:
        raise APIError(
            422,
            "no_gpu_worker",
            "The job asks for device 'cuda' but no worker with a GPU is online; "
            "use 'auto' to train on whatever workers exist.",
            "distribution.device",
        )
    dataset = DatasetRepository(session, Scope.tenant(tenant_id)).get(spec.dataset_id)
    if dataset is None:
        raise NotFound("dataset", spec.dataset_id, param="dataset_id")
    if dataset.status == DatasetStatus.FAILED:
        raise APIError(
            409,
            "dataset_failed",
            f"Dataset {dataset.id} failed ingest: {dataset.error}",
            "dataset_id",
        )
    task = None
    # A dataset still being ingested has no columns yet: the prepare task checks it later.
    if dataset.status == DatasetStatus.READY:
        try:
            task = check_spec(spec, dataset.columns or [], dataset.rows or 0)
        except SpecError as exc:
            raise APIError(422, "invalid_spec", exc.message, exc.param) from exc
    init_model_id = reference = None
    if spec.init_from is not None:
        reference = spec.init_from.model
        init = resolve_init_model(session, tenant_id, reference)
        if task is not None:
            dtypes = {c["name"]: c["dtype"] for c in dataset.columns or []}
            try:
                check_warm_start(spec, init, init_spec(session, init), dtypes, task)
            except WarmStartError as exc:
                raise APIError(422, "invalid_spec", exc.message, exc.param) from exc
        init_model_id = init.id
    job = queue_job(
        session,
        dispatcher,
        Job(
            tenant_id=tenant_id,
            dataset_id=dataset.id,
            spec=body,
            task=task,
            rounds=spec.rounds,
            init_model_id=init_model_id,
        ),
    )
    job_id = job.id
    if init_model_id is not None:
        record_event(
            session,
            job_id,
            "job.warm_start",
            f"the job starts from model {init_model_id} ({reference})",
            model_id=init_model_id,
        )
    if idempotency_key is not None:
        IdempotencyRepository(session, tenant_id).remember(
            "jobs.create", idempotency_key, job_id, fingerprint(body)
        )
    return job


def queue_job(session: Session, dispatcher: Dispatcher, job: Job) -> Job:
    """Add a checked job, queued for its prepare once this transaction commits: the
    API's jobs and a sweep's trials."""
    job.status, job.stage, job.stage_started_at = JobStatus.QUEUED, "prepare", time.time()
    JobRepository(session, Scope.tenant(job.tenant_id)).add(job)
    record_event(session, job.id, "job.created", f"job queued on dataset {job.dataset_id}")
    send_after_commit(session, dispatcher, "prepare", job_id=job.id)
    return job


def rerun_job(
    session: Session,
    dispatcher: Dispatcher,
    fleet: WorkerRegistry,
    job_id: str,
    tenant_id: str,
    limits: Limits | None = None,
    idempotency_key: str | None = None,
) -> Job:
    """A new job with the same spec: a new model version, trained from scratch."""
    earlier = get_job(session, job_id, tenant_id)
    request = fingerprint({"rerun_of": job_id})
    keys = IdempotencyRepository(session, tenant_id)
    if idempotency_key is not None:
        done = keys.find("jobs.rerun", idempotency_key, request)
        if done is not None:
            return get_job(session, done, tenant_id)
    spec = JobSpec.stored(earlier.spec)
    job = create_job(session, dispatcher, fleet, spec, tenant_id, limits=limits)
    record_event(session, job.id, "job.rerun", f"re-run of {job_id}", rerun_of=job_id)
    if idempotency_key is not None:
        keys.remember("jobs.rerun", idempotency_key, job.id, request)
    return job


def cancel_job(session: Session, dispatcher: Dispatcher, job_id: str, tenant_id: str) -> Job:
    """Idempotent: cancelling a cancelled job returns it unchanged."""
    job = JobRepository(session, Scope.tenant(tenant_id)).get(job_id, for_update=True)
    if job is None:
        raise NotFound("job", job_id)
    if job.status == JobStatus.CANCELLED:
        return job
    if job.status in JOB_TERMINAL:
        raise APIError(
            409, "job_finished", f"Job {job_id} already {job.status}; it cannot be cancelled.", "id"
        )
    stop_job(session, dispatcher, job, "cancelled by request")
    # A trial cancelled by hand ends its trial; the sweep goes on without it.
    step_sweep_after_commit(session, dispatcher, job_id)
    return job


def stop_job(session: Session, dispatcher: Dispatcher, job: Job, reason: str) -> None:
    """Cancel an unfinished job (its row locked by the caller) and drop its queued
    shard tasks once this commits: a cancel, or a sweep pruning or ending its trial."""
    was_running = job.status == JobStatus.RUNNING
    transition(job, JobStatus.CANCELLED, reason=reason)
    if was_running and job.plan is not None:
        send_after_commit(
            session,
            dispatcher,
            "revoke_round",
            job_id=job.id,
            round_=job.current_round + 1,
            shards=ShardPlan.from_dict(job.plan).shards,
            attempts=job.stage_attempts,
        )


def delete_job(
    session: Session, store: BlobStore, params: ParamStore, job_id: str, tenant_id: str
) -> JobDeletedOut:
    """Delete a finished job with everything it left: its rounds, events and
    idempotency records, its shards and checkpoints, its parameters in Redis. Refused
    while it runs (cancel it first) and while its model exists (a model's metrics and
    gate are read against its job: delete the model first). The bytes and Redis keys go
    after the commit, so a rollback never leaves rows whose data is gone."""
    job = JobRepository(session, Scope.tenant(tenant_id)).get(job_id, for_update=True)
    if job is None:
        raise NotFound("job", job_id)
    if job.status not in JOB_TERMINAL:
        raise APIError(
            409,
            "job_not_finished",
            f"Job {job_id} is {job.status}; cancel it, or wait for it to finish, first.",
            "id",
        )
    model_ids = ModelRepository(session, Scope.tenant(tenant_id)).ids_of_job(job_id)
    if model_ids:
        raise APIError(
            409,
            "job_has_model",
            f"Job {job_id} trained model {model_ids[0]}; delete the model first.",
            "id",
        )
    sharing = JobRepository(session, Scope.tenant(tenant_id)).sharing_shards_of(job_id)
    if sharing:
        raise APIError(
            409,
            "job_shards_in_use",
            f"Job {sharing[0]} trains on the shards job {job_id} prepared; delete it first.",
            "id",
        )
    session.execute(delete(JobRound).where(JobRound.job_id == job_id))
    session.execute(delete(JobEvent).where(JobEvent.job_id == job_id))
    session.execute(delete(IdempotencyKey).where(IdempotencyKey.object_id == job_id))
    session.delete(job)
    session.flush()

    def remove_data() -> None:
        store.delete_prefix(keys.job_prefix(job_id))
        try:
            params.delete_job(job_id)
        except redis.RedisError:
            # The delete is committed; the keys expire on their own (PARAM_TTL_S).
            logger.warning("job %s deleted; its Redis keys are left to expire", job_id)

    enqueue_after_commit(session, remove_data)
    return JobDeletedOut(id=job_id)


def list_events(
    session: Session, job_id: str, *, limit: int, after: str | None, tenant_id: str
) -> tuple[list[JobEvent], bool]:
    get_job(session, job_id, tenant_id)
    return JobRepository(session, Scope.tenant(tenant_id)).events(job_id, limit=limit, after=after)


def get_job(session: Session, job_id: str, tenant_id: str) -> Job:
    job = JobRepository(session, Scope.tenant(tenant_id)).get(job_id)
    if job is None:
        raise NotFound("job", job_id)
    return job


def list_jobs(
    session: Session, *, limit: int, after: str | None, tenant_id: str
) -> tuple[list[Job], bool]:
    return JobRepository(session, Scope.tenant(tenant_id)).page(limit=limit, after=after)


def round_metrics(session: Session, job_id: str, tenant_id: str) -> list[RoundMetricsOut]:
    get_job(session, job_id, tenant_id)
    return [
        RoundMetricsOut.model_validate(r, from_attributes=True)
        for r in JobRepository(session, SYSTEM).rounds(job_id)
    ]


def job_out(job: Job) -> JobOut:
    error = None
    if job.error_code:
        error = JobError(code=job.error_code, message=job.error_message or "")
    return JobOut(
        id=job.id,
        status=job.status,
        spec=JobSpec.stored(job.spec),
        task=job.task,
        progress=Progress(round=job.current_round, rounds=job.rounds),
        metrics=job.metrics,
        model_id=job.model_id,
        init_model_id=job.init_model_id,
        sweep_id=job.sweep_id,
        error=error,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )
