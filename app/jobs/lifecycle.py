"""The job status machine: the only code that changes `Job.status`."""

from app.models import Job
from app.models.base import now_s

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
_ALLOWED = {
    "queued": {"preparing", "failed", "cancelled"},
    "preparing": {"running", "failed", "cancelled"},
    "running": {"succeeded", "failed", "cancelled"},
}


class IllegalTransition(RuntimeError):
    pass


def transition(job: Job, status: str) -> None:
    if status not in _ALLOWED.get(job.status, set()):
        raise IllegalTransition(f"job {job.id}: {job.status} -> {status} is not allowed")
    job.status = status
    if status == "preparing":
        job.started_at = now_s()
    if status in TERMINAL:
        job.finished_at = now_s()


def fail(job: Job, code: str, message: str) -> None:
    """Fail a job unless it has already ended (a late failure never overwrites a result)."""
    if job.status in TERMINAL:
        return
    transition(job, "failed")
    job.error_code, job.error_message = code, message[:2000]
