"""Finds jobs, datasets and batch predictions whose awaited stage made no progress
within the deadline and sends it again.

Messages can be lost: a worker killed mid-task whose message Redis never hands back,
a chord whose callback never fires, a Redis that restarted and forgot its queues.
Every stage is idempotent, so sending it again is always safe; after `max_attempts`
the job fails with `worker_lost` instead of waiting forever. Every decision is an event.
"""

import time
from typing import Protocol

from sqlalchemy.orm import Session

from app.datasets.ingest_run import fail_dataset
from app.datasets.repository import DatasetRepository
from app.jobs.events import record_event
from app.jobs.lifecycle import fail
from app.jobs.plan import ShardPlan
from app.jobs.repository import JobRepository
from app.jobs.spec import JobSpec
from app.jobs.stages.next_step import NextStep, await_finalize, await_round
from app.registry.repository import BatchPredictionRepository
from app.storage import BlobStore
from app.tables import Job
from app.tables.base import now_s
from app.tables.statuses import BatchStatus, DatasetStatus, JobStatus
from app.tenancy.scope import SYSTEM


def sweep(
    session: Session, *, deadline_s: float, max_attempts: int, now: float | None = None
) -> list[tuple[str, NextStep | str]]:
    """Decide, for every stalled job, what to send again ("prepare" or a NextStep),
    or fail it. The caller sends the messages after the commit."""
    now = time.time() if now is None else now
    repository = JobRepository(session, SYSTEM)
    resend: list[tuple[str, NextStep | str]] = []
    for stalled in repository.stalled(before=now - deadline_s):
        job = repository.get(stalled.id, for_update=True)
        # Re-checked under the lock: another sweep or a late merge may have moved it.
        if job is None or job.stage_started_at is None or job.stage_started_at >= now - deadline_s:
            continue
        if _waiting_for_ingest(session, job):
            continue
        attempt = job.stage_attempts + 1
        # Counted from the last resume, which sends its stage with new task ids.
        tried = attempt - (job.attempt_base or 0)
        if tried >= max_attempts:
            fail(
                job,
                "worker_lost",
                f"no progress on stage {job.stage!r} after {tried} attempt(s) "
                f"of {deadline_s:.0f} s each",
            )
            continue
        waited = now - job.stage_started_at
        record_event(
            session,
            job.id,
            "watchdog.resent",
            f"stage {job.stage!r} made no progress in {waited:.0f} s; sending it again "
            f"(attempt {tried + 1} of {max_attempts})",
            level="warning",
            stage=job.stage,
            attempt=attempt,
        )
        resend.append((job.id, _resend(job, attempt)))
    return resend


def _waiting_for_ingest(session: Session, job: Job) -> bool:
    # A queued job on a dataset still being ingested is waiting, not stalled.
    if job.status != JobStatus.QUEUED:
        return False
    dataset = DatasetRepository(session, SYSTEM).get(job.dataset_id)
    return dataset is not None and dataset.status == DatasetStatus.PROCESSING


def _resend(job: Job, attempt: int) -> NextStep | str:
    if job.stage == "round" and job.plan is not None:
        spec = JobSpec.stored(job.spec)
        # The whole chord again: shards already stored return at once, the rest train,
        # and the merge fires once all have answered.
        return await_round(
            job, job.current_round + 1, ShardPlan.from_dict(job.plan).shards, spec, attempt
        )
    if job.stage == "finalize":
        return await_finalize(job, attempt)
    job.stage_started_at, job.stage_attempts = time.time(), attempt
    return "prepare"


class _Watched(Protocol):
    stage_started_at: float | None
    stage_attempts: int


def _send_again(row: _Watched, now: float, max_attempts: int) -> bool:
    """Record one more send and say yes, or say no when the attempts are used up."""
    if row.stage_attempts + 1 >= max_attempts:
        return False
    row.stage_started_at, row.stage_attempts = now, row.stage_attempts + 1
    return True


def _lost(what: str, max_attempts: int, deadline_s: float) -> str:
    return (
        f"worker_lost: no worker finished {what} after {max_attempts} attempt(s) "
        f"of {deadline_s:.0f} s each"
    )


def sweep_datasets(
    session: Session,
    *,
    deadline_s: float,
    max_attempts: int,
    now: float | None = None,
    store: BlobStore | None = None,
) -> list[str]:
    """Ids of datasets whose ingest to send again; datasets out of attempts fail, and
    with a `store` lose the Parquet file an ingest left before its commit was lost."""
    now = time.time() if now is None else now
    resend = []
    for dataset in DatasetRepository(session, SYSTEM).stalled(before=now - deadline_s):
        if _send_again(dataset, now, max_attempts):
            resend.append(dataset.id)
            continue
        message = _lost("ingesting this file", max_attempts, deadline_s) + "; upload it again"
        if store is None:
            dataset.status, dataset.error = DatasetStatus.FAILED, message
        else:
            fail_dataset(session, store, dataset, message)
    return resend


def sweep_batch_predictions(
    session: Session, *, deadline_s: float, max_attempts: int, now: float | None = None
) -> list[str]:
    """Ids of batch predictions to send again; runs out of attempts fail."""
    now = time.time() if now is None else now
    resend = []
    for batch in BatchPredictionRepository(session, SYSTEM).stalled(before=now - deadline_s):
        if _send_again(batch, now, max_attempts):
            resend.append(batch.id)
        else:
            batch.status, batch.finished_at = BatchStatus.FAILED, now_s()
            batch.error = _lost("this run", max_attempts, deadline_s)
    return resend
