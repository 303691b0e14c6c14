"""The job status machine: the only code that changes `Job.status`, and each change
is recorded as an event in the same transaction."""

from sqlalchemy.orm import object_session

from app.jobs.events import record_event
from app.tables import Job
from app.tables.base import now_s
from app.tables.statuses import JOB_TERMINAL, JobStatus

_ALLOWED: dict[str, set[JobStatus]] = {
    JobStatus.QUEUED: {JobStatus.PREPARING, JobStatus.FAILED, JobStatus.CANCELLED},
    JobStatus.PREPARING: {JobStatus.RUNNING, JobStatus.FAILED, JobStatus.CANCELLED},
    JobStatus.RUNNING: {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED},
}


class IllegalTransition(RuntimeError):
    pass


def transition(job: Job, status: JobStatus, *, reason: str | None = None) -> None:
    if status not in _ALLOWED.get(job.status, set()):
        raise IllegalTransition(f"job {job.id}: {job.status} -> {status} is not allowed")
    previous, job.status = job.status, status
    if status == JobStatus.PREPARING:
        job.started_at = now_s()
    if status in JOB_TERMINAL:
        job.finished_at = now_s()
        job.stage_started_at = None
    session = object_session(job)
    if session is not None:
        record_event(
            session,
            job.id,
            "job.status",
            reason or f"{previous} -> {status}",
            level="error" if status == JobStatus.FAILED else "info",
            previous=previous,
            status=status,
        )


def fail(job: Job, code: str, message: str) -> None:
    """Fail a job unless it has already ended (a late failure never overwrites a result)."""
    if job.status in JOB_TERMINAL:
        return
    job.error_code, job.error_message = code, message[:2000]
    transition(job, JobStatus.FAILED, reason=f"failed ({code}): {message[:500]}")


RESUMABLE = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})


def resume(job: Job, reason: str) -> None:
    """A failed or cancelled job running again from its last checkpoint: the one way
    out of those two ends, and only `resume_job` takes it."""
    if job.status not in RESUMABLE:
        raise IllegalTransition(f"job {job.id}: {job.status} cannot be resumed")
    previous, job.status = job.status, JobStatus.RUNNING
    job.error_code = job.error_message = None
    job.finished_at = None
    session = object_session(job)
    if session is not None:
        record_event(
            session,
            job.id,
            "job.status",
            reason,
            previous=previous,
            status=JobStatus.RUNNING,
        )
