"""How a task meets failure: a lost race is retried on fresh state, an outage of Redis
or the database is ridden out with backoff and then left to the watchdog, and a job's
failure is recorded even across a database blip."""

import logging
from collections.abc import Callable

import redis
from celery import Task
from sqlalchemy.orm.exc import StaleDataError

from app.config import get_settings
from app.db import OutageTooLong, is_transient_database_error, retry_transient, session_scope
from app.jobs.lifecycle import fail
from app.jobs.repository import JobRepository
from app.sweeps.repository import SweepRepository
from app.sweeps.step import stop_sweep
from app.sweeps.triggers import step_sweep_after_commit
from app.tables.statuses import SWEEP_TERMINAL
from app.tenancy.scope import SYSTEM
from workers.resources import dispatcher

logger = logging.getLogger(__name__)


def retry_if_stale(task: Task, exc: Exception) -> None:
    """Another transaction changed the row first (a cancel, a watchdog sweep): run the
    task again on fresh state instead of failing the job for it."""
    if isinstance(exc, StaleDataError):
        raise task.retry(countdown=1, max_retries=10, exc=exc)


def _outage_grace(exc: BaseException) -> float | None:
    """How long a stage rides out an error of this kind; None: not an outage."""
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        return get_settings().redis_outage_grace_s
    if is_transient_database_error(exc):
        return get_settings().database_outage_grace_s
    return None


def is_outage(exc: BaseException) -> bool:
    return _outage_grace(exc) is not None


def riding_out(stage: str, run: Callable[[], None]) -> None:
    """Run a stage again, with backoff, while Redis or the database is unreachable (a
    restart, a failover) or the database asks for a retry: every stage is idempotent,
    so a rerun after a half-done attempt is safe. Failing the job at the first refused
    connection would turn a short blip into a lost job. Past the grace (from the first
    failure) `OutageTooLong` is raised, for `leave_to_watchdog`."""
    retry_transient(stage, run, grace_for=_outage_grace)


def leave_to_watchdog(exc: OutageTooLong) -> None:
    # Not the job's fault, and with the database down its failure could not be recorded
    # anyway: the watchdog sends the stage again once its deadline passes, by which time
    # the outage is over, or the job fails as worker_lost after its attempts.
    logger.error("%s; leaving the stage to the watchdog", exc)


def fail_job(job_id: str, code: str, message: str) -> None:
    def record() -> None:
        with session_scope() as session:
            job = JobRepository(session, SYSTEM).get(job_id, for_update=True)
            if job is not None:
                fail(job, code, message)
                step_sweep_after_commit(session, dispatcher(), job_id)

    # The failure is recorded even across a database blip: a job whose stage failed
    # must not stay `running` until the watchdog's deadline.
    try:
        riding_out(f"recording the failure of job {job_id}", record)
    except OutageTooLong as exc:
        leave_to_watchdog(exc)


def fail_sweep(sweep_id: str, code: str, message: str) -> None:
    """A step that crashed on something other than an outage would crash again on every
    redelivery: the sweep ends `failed` with its trials stopped, rather than stall."""

    def record() -> None:
        with session_scope() as session:
            sweep = SweepRepository(session, SYSTEM).get(sweep_id, for_update=True)
            if sweep is not None and sweep.status not in SWEEP_TERMINAL:
                stop_sweep(session, dispatcher(), sweep, f"sweep failed: {message}",
                           failure=(code, message[:2000]))  # fmt: skip

    try:
        riding_out(f"recording the failure of sweep {sweep_id}", record)
    except OutageTooLong as exc:
        leave_to_watchdog(exc)
