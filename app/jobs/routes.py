from typing import Annotated

import redis
from fastapi import APIRouter, Body, Query, Request
from sse_starlette import EventSourceResponse

from app.db import enqueue_after_commit
from app.deps import (
    DispatcherDep,
    FleetDep,
    LimitsDep,
    SessionDep,
    SettingsDep,
    StoreDep,
    TenantDep,
)
from app.errors import COMMON_ERROR_RESPONSES, ErrorResponse
from app.idempotency import IdempotencyKeyHeader
from app.jobs import resume, service
from app.jobs.live import stream_events
from app.jobs.schemas import EventOut, JobDeletedOut, JobOut, RoundMetricsOut
from app.jobs.spec import JobSpec
from app.paramstore import ParamStore
from app.schemas import ListResponse

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=COMMON_ERROR_RESPONSES)

_NOT_FOUND: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorResponse, "description": "No such job."}
}


@router.post(
    "",
    operation_id="jobs-create",
    summary="Create a training job",
    status_code=201,
    response_model=JobOut,
    responses={
        404: {"model": ErrorResponse, "description": "The dataset does not exist."},
        409: {"model": ErrorResponse, "description": "The dataset failed ingest."},
        422: {"model": ErrorResponse, "description": "The spec does not fit the dataset."},
        429: {"model": ErrorResponse, "description": "Too many unfinished jobs (quota)."},
    },
    openapi_extra={
        "requestBody": {
            "description": "What to train: the dataset and target, the model, training and "
            "sharding options, and the gate the model must pass to be deployed."
        }
    },
)
def create_job(
    session: SessionDep,
    tenant: TenantDep,
    dispatcher: DispatcherDep,
    fleet: FleetDep,
    spec: Annotated[JobSpec, Body()],
    limits: LimitsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JobOut:
    """Queue a job. Shards train in parallel on the workers, round after round;
    the merged model is scored on the holdout and deployed if it passes `deploy_if`."""
    job = service.create_job(session, dispatcher, fleet, spec, tenant, idempotency_key, limits)
    return service.job_out(job)


@router.get("", operation_id="jobs-list", summary="List jobs", response_model=ListResponse[JobOut])
def list_jobs(
    session: SessionDep,
    tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[str | None, Query(max_length=64)] = None,
) -> ListResponse[JobOut]:
    """The tenant's jobs, newest first. Page with `after` (the last id seen) while
    `has_more` is true."""
    rows, has_more = service.list_jobs(session, limit=limit, after=after, tenant_id=tenant)
    return ListResponse[JobOut](data=[service.job_out(j) for j in rows], has_more=has_more)


@router.get(
    "/{job_id}",
    operation_id="jobs-get",
    summary="Read a job",
    response_model=JobOut,
    responses=_NOT_FOUND,
)
def get_job(session: SessionDep, tenant: TenantDep, job_id: str) -> JobOut:
    """A job's status, progress (round of rounds), latest metrics and, once it has
    succeeded, the id of the model it made."""
    return service.job_out(service.get_job(session, job_id, tenant))


@router.get(
    "/{job_id}/metrics",
    operation_id="jobs-metrics",
    summary="Per-round training metrics",
    response_model=ListResponse[RoundMetricsOut],
    responses=_NOT_FOUND,
)
def job_metrics(
    session: SessionDep, tenant: TenantDep, job_id: str
) -> ListResponse[RoundMetricsOut]:
    """One entry per merged round: train and validation loss, validation metrics,
    each shard's loss, examples and seconds, and the shards left out of the merge."""
    return ListResponse[RoundMetricsOut](
        data=service.round_metrics(session, job_id, tenant), has_more=False
    )


@router.post(
    "/{job_id}/rerun",
    operation_id="jobs-rerun",
    summary="Train again with the same spec",
    status_code=201,
    response_model=JobOut,
    responses={
        **_NOT_FOUND,
        409: {"model": ErrorResponse, "description": "The dataset failed ingest."},
        422: {"model": ErrorResponse, "description": "The spec no longer fits the dataset."},
        429: {"model": ErrorResponse, "description": "Too many unfinished jobs (quota)."},
    },
)
def rerun_job(
    session: SessionDep,
    tenant: TenantDep,
    limits: LimitsDep,
    dispatcher: DispatcherDep,
    fleet: FleetDep,
    job_id: str,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JobOut:
    """A new job, and so a new model version, from the spec of an earlier one. With an
    `Idempotency-Key`, a repeated request returns the job the first one made."""
    rerun = service.rerun_job(
        session, dispatcher, fleet, job_id, tenant, limits, idempotency_key=idempotency_key
    )
    return service.job_out(rerun)


@router.post(
    "/{job_id}/resume",
    operation_id="jobs-resume",
    summary="Resume a failed or cancelled job from its last checkpoint",
    response_model=JobOut,
    responses={
        **_NOT_FOUND,
        409: {
            "model": ErrorResponse,
            "description": "The job succeeded, stopped before its shards were written, or "
            "its checkpoint or shards are gone (`job_not_resumable`).",
        },
        422: {"model": ErrorResponse, "description": "Over a quota of this account."},
        429: {"model": ErrorResponse, "description": "Too many unfinished jobs (quota)."},
    },
)
def resume_job(
    session: SessionDep,
    tenant: TenantDep,
    limits: LimitsDep,
    dispatcher: DispatcherDep,
    store: StoreDep,
    job_id: str,
) -> JobOut:
    """The same job, running again from the checkpoint of its last merged round with
    the same shards and seeds (or finalizing again, if it stopped there). After a
    transient failure, the model it ends with is the one an uninterrupted run would
    have trained, bit for bit. Unlike `rerun`, no new job and no new version: the job
    id, its rounds and its events carry on. Idempotent: a queued, preparing or running
    job is answered unchanged."""
    return service.job_out(resume.resume_job(session, dispatcher, store, job_id, tenant, limits))


@router.post(
    "/{job_id}/cancel",
    operation_id="jobs-cancel",
    summary="Cancel a job",
    response_model=JobOut,
    responses={
        **_NOT_FOUND,
        409: {"model": ErrorResponse, "description": "The job already succeeded or failed."},
    },
)
def cancel_job(
    session: SessionDep, tenant: TenantDep, dispatcher: DispatcherDep, job_id: str
) -> JobOut:
    """Idempotent. A queued job is cancelled at once; a running one stops at the next
    round boundary at the latest, its queued shard tasks revoked, and no model is made."""
    return service.job_out(service.cancel_job(session, dispatcher, job_id, tenant))


@router.delete(
    "/{job_id}",
    operation_id="jobs-delete",
    summary="Delete a finished job and its data",
    response_model=JobDeletedOut,
    responses={
        **_NOT_FOUND,
        409: {
            "model": ErrorResponse,
            "description": "The job has not finished, the model it trained still exists, or "
            "another job trains on its shards (`job_shards_in_use`).",
        },
    },
)
def delete_job(
    session: SessionDep, tenant: TenantDep, store: StoreDep, settings: SettingsDep, job_id: str
) -> JobDeletedOut:
    """Removes a succeeded, failed or cancelled job with its rounds, events, shards,
    checkpoints and parameters in Redis. Delete the job's model first; the dataset
    stays."""
    # A client of its own: deletes are rare, and the app's shared client is tuned for
    # the request path's quick lookups.
    client = redis.Redis.from_url(settings.broker_url, socket_timeout=5, socket_connect_timeout=1)
    params = ParamStore(client, chunk_bytes=settings.param_chunk_bytes, ttl_s=settings.param_ttl_s)
    try:
        deleted = service.delete_job(session, store, params, job_id, tenant)
    except BaseException:
        client.close()
        raise
    # Queued after the service's own after-commit work, so it runs once that is done.
    enqueue_after_commit(session, client.close)
    return deleted


@router.get(
    "/{job_id}/events",
    operation_id="jobs-events",
    summary="A job's events, or a live stream of them",
    response_model=ListResponse[EventOut],
    responses={
        **_NOT_FOUND,
        200: {
            "description": "The events, oldest first. With `Accept: text/event-stream`, "
            "a server-sent event stream that ends when the job does.",
            "content": {
                "text/event-stream": {
                    "schema": {"type": "string"},
                    "example": "id: evt_1b2c3d4e5f6a7b8c9d0e1f2a\nevent: round.completed\n"
                    'data: {"id": "evt_1b2c3d4e5f6a7b8c9d0e1f2a", "type": "round.completed", '
                    '"message": "round 4 of 10 merged from 4 shard(s)"}\n\n',
                }
            },
        },
    },
)
def job_events(
    request: Request,
    session: SessionDep,
    tenant: TenantDep,
    job_id: str,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[str | None, Query(max_length=64)] = None,
) -> ListResponse[EventOut] | EventSourceResponse:
    """Every transition and round of a job, oldest first, paged with `after`. Send
    `Accept: text/event-stream` to follow it live; the stream resumes after
    `Last-Event-ID` and ends when the job does."""
    rows, has_more = service.list_events(
        session, job_id, limit=limit, after=after, tenant_id=tenant
    )
    if "text/event-stream" in request.headers.get("accept", ""):
        return EventSourceResponse(
            # A browser's EventSource resumes with Last-Event-ID after a reconnect.
            stream_events(
                request.app.state.event_notifier,
                job_id,
                after or request.headers.get("last-event-id"),
            ),
            ping=request.app.state.settings.sse_ping_s,
        )
    return ListResponse[EventOut](
        data=[EventOut.model_validate(e) for e in rows], has_more=has_more
    )
