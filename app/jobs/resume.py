"""Resuming a failed or cancelled job (`POST /v1/jobs/{id}/resume`) from its last
checkpoint: the same shards, the same seeds, the stage it stopped in.

Every round is a function of the previous round's merged state (checkpointed in blob
storage), the shard files and the seeds of (round, shard), and early stopping's
progress lives on the job's row. So a job resumed after a transient failure (a worker
lost, an outage past the grace, a cancel) ends with the model an uninterrupted run
would have trained, bit for bit.
"""

from sqlalchemy.orm import Session

from app.dispatch import Dispatcher
from app.errors import APIError, NotFound
from app.jobs.events import record_event
from app.jobs.lifecycle import RESUMABLE, resume
from app.jobs.plan import ShardPlan
from app.jobs.repository import JobRepository
from app.jobs.spec import JobSpec
from app.jobs.stages.next_step import await_finalize, await_round
from app.outbox import send_after_commit
from app.storage import BlobStore, keys
from app.tables import Job
from app.tables.statuses import JOB_ACTIVE
from app.tenancy.limits import Limits, check_job_quota
from app.tenancy.scope import Scope


def _not_resumable(job_id: str, why: str) -> APIError:
    return APIError(409, "job_not_resumable", f"Job {job_id} cannot be resumed: {why}.", "id")


def resume_job(
    session: Session,
    dispatcher: Dispatcher,
    store: BlobStore,
    job_id: str,
    tenant_id: str,
    limits: Limits | None = None,
) -> Job:
    job = JobRepository(session, Scope.tenant(tenant_id)).get(job_id, for_update=True)
    if job is None:
        raise NotFound("job", job_id)
    if job.status in JOB_ACTIVE:
        # Idempotent, as cancel is: a retried resume whose answer was lost finds the
        # job running and changes nothing.
        return job
    if job.status not in RESUMABLE:
        raise _not_resumable(job_id, f"it is {job.status}; only a failed or cancelled job resumes")
    if job.plan is None:
        raise _not_resumable(
            job_id,
            "it stopped before its shards were written; POST /v1/jobs/{id}/rerun trains it again",
        )
    plan, spec = ShardPlan.from_dict(job.plan), JobSpec.stored(job.spec)
    if not store.exists(keys.job_checkpoint(job_id, job.current_round)):
        raise _not_resumable(job_id, f"the checkpoint of round {job.current_round} is gone")
    lost = [key for key in [*plan.shard_keys, plan.validation_key] if not store.exists(key)]
    if lost:
        raise _not_resumable(job_id, f"its shard file {lost[0]} is gone")
    if limits is not None:
        rounds, rounds_param = spec.quota_rounds
        check_job_quota(
            session,
            limits,
            tenant_id,
            shards=plan.shards,
            rounds=rounds,
            rounds_param=rounds_param,
        )
    stopped, error = job.status, job.error_code
    resume(job, f"{stopped} -> running: resumed from round {job.current_round} by request")
    # New task ids (a cancel revoked the old ones), and a full retry budget from here.
    attempt = job.stage_attempts + 1
    job.attempt_base = attempt
    if job.stage == "finalize":
        step = await_finalize(job, attempt)
    else:
        step = await_round(job, job.current_round + 1, plan.shards, spec, attempt)
    record_event(
        session,
        job_id,
        "job.resumed",
        f"resumed after it was {stopped}"
        + (f" ({error})" if error else "")
        + f", from the checkpoint of round {job.current_round}",
        previous=stopped,
        error=error,
        round=job.current_round,
    )
    message = step.message(job_id)
    assert message is not None
    kind, args = message
    send_after_commit(session, dispatcher, kind, **args)
    return job
