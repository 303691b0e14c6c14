"""Thin Celery tasks: ids in, state re-read in SQL, work done by `app.jobs` and
`app.datasets`, next messages sent only after the commit. How they meet failure is in
`workers.resilience`; what a worker process does at start and stop, in
`workers.process_signals`."""

import logging

import redis
from celery import Task
from celery.exceptions import Retry
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.config import get_settings
from app.datasets import ingest_run
from app.datasets.ingest_run import ingest_dataset as ingest
from app.datasets.ingest_run import mark_failed
from app.db import OutageTooLong, enqueue_after_commit, session_scope
from app.jobs.repository import JobRepository
from app.jobs.spec import JobSpec
from app.jobs.stages import finalize, merge, next_step, prepare, train
from app.jobs.watchdog import sweep, sweep_batch_predictions, sweep_datasets
from app.messaging import TaskName
from app.observability.logging import log_ids
from app.outbox import relay_pending, send_after_commit
from app.registry import batch
from app.sweeps import step as sweep_step
from app.sweeps.repository import SweepRepository
from app.sweeps.triggers import step_sweep_after_commit
from app.tenancy.scope import SYSTEM
from workers import process_signals  # noqa: F401  (registers the worker signals)
from workers.celery_app import celery_app
from workers.resilience import (
    fail_job,
    fail_sweep,
    is_outage,
    leave_to_watchdog,
    retry_if_stale,
    riding_out,
)
from workers.resources import alias_generations as _alias_generations
from workers.resources import dispatcher as _dispatcher
from workers.resources import metrics as _metrics
from workers.resources import params as _params
from workers.resources import store as _store

logger = logging.getLogger(__name__)


@celery_app.task(name=TaskName.INGEST_DATASET.value, bind=True)
def ingest_dataset(self: Task, dataset_id: str) -> None:
    with log_ids(dataset_id=dataset_id):
        try:
            _ingest_dataset(dataset_id)
        except OutageTooLong as exc:
            # Left `processing`: the watchdog sends the ingest again once the database is
            # back, and that delivery counts towards INGEST_MAX_DELIVERIES.
            leave_to_watchdog(exc)
        except Exception as exc:
            retry_if_stale(self, exc)
            # Anything but a bad file (those are IngestError, handled inside) is our fault:
            # the dataset still ends `failed`, never `processing` forever.
            logger.exception("ingest crashed for dataset %s", dataset_id)
            message = f"internal error during ingest: {type(exc).__name__}"

            def record_failure() -> None:
                with session_scope() as session:
                    mark_failed(session, _store(), dataset_id, message)

            try:
                riding_out(f"recording the failure of dataset {dataset_id}", record_failure)
            except OutageTooLong as outage:
                leave_to_watchdog(outage)


def _ingest_dataset(dataset_id: str) -> None:
    settings, store = get_settings(), _store()
    go: list[bool] = []

    def begin() -> None:
        # Committed before the work, so a delivery whose worker is killed still counts.
        with session_scope() as session:
            go.append(
                ingest_run.begin_ingest(
                    session,
                    store,
                    dataset_id,
                    max_deliveries=settings.ingest_max_deliveries,
                    grace_s=settings.orphan_grace_s,
                )
            )

    riding_out(f"starting the ingest of dataset {dataset_id}", begin)
    if not go[-1]:
        return
    found: list[ingest_run.IngestOutcome] = []

    def run() -> None:
        with session_scope() as session:
            if found:
                # The file was read and its Parquet is in place; only the commit was lost
                # (the database restarted as the ingest ended): record it, do not redo it.
                ingest_run.record_ingest(session, store, dataset_id, found[0])
            elif (outcome := ingest(session, store, dataset_id)) is not None:
                found.append(outcome)

    riding_out(f"the ingest of dataset {dataset_id}", run)


@celery_app.task(name=TaskName.PREPARE_JOB.value, bind=True, max_retries=None)
def prepare_job(self: Task, job_id: str) -> None:
    with log_ids(job_id=job_id):
        _prepare_job(self, job_id)


def _prepare_job(self: Task, job_id: str) -> None:
    settings = get_settings()
    max_wait_s = settings.dataset_wait_s or settings.stage_deadline_s * (settings.max_attempts + 1)
    steps: list[prepare.PrepareStep] = []

    def begin() -> None:
        with session_scope() as session:
            steps.append(prepare.begin_prepare(session, job_id, max_wait_s=max_wait_s))

    def build() -> None:
        with session_scope() as session:
            work = prepare.read_build_input(session, job_id)
        if work is None:
            return
        # Minutes for a large dataset: no transaction stays open while the shards are written.
        built = prepare.write_shards(_store(), _params(), work)
        with session_scope() as session:
            first_round = prepare.record_shards(session, work, built)
            _send_after_commit(session, job_id, first_round)
            step_sweep_after_commit(session, _dispatcher(), job_id)

    try:
        riding_out("prepare", begin)
        if steps[-1] == "wait":
            # The dataset is still being ingested: look again shortly, without blocking a
            # worker. begin_prepare fails the job once it has waited `max_wait_s`.
            raise self.retry(countdown=min(2 + self.request.retries, 10))
        if steps[-1] == "build":
            riding_out("prepare", build)
    except OutageTooLong as exc:
        leave_to_watchdog(exc)
    except Retry:
        raise
    except Exception as exc:
        retry_if_stale(self, exc)
        logger.exception("prepare failed for job %s", job_id)
        fail_job(job_id, "prepare_failed", f"{type(exc).__name__}: {exc}")


def _send_after_commit(session: Session, job_id: str, step: next_step.NextStep) -> None:
    message = step.message(job_id)
    if message is not None:
        kind, args = message
        send_after_commit(session, _dispatcher(), kind, **args)


@celery_app.task(name=TaskName.TRAIN_SHARD.value, bind=True)
def train_shard(self: Task, job_id: str, round_: int, shard: int) -> None:
    with log_ids(job_id=job_id, round=round_, shard=shard):
        params = _params()

        def still_wanted(work: train.ShardWork) -> bool:
            with session_scope() as session:
                return train.shard_still_wanted(session, params, work)

        def train_and_store() -> None:
            # Only the reads hold a session: a database restart while the shard trains
            # costs it nothing, and the result goes to Redis, not SQL.
            with session_scope() as session:
                work = train.read_shard_work(session, params, job_id, round_, shard)
            if work is None:
                return
            watch = train.ShardWatch(lambda: still_wanted(work), is_outage=is_outage)
            if train.run_shard(work, _store(), params, watch, worker=self.request.hostname or ""):
                _withdraw_if_late(job_id, round_)

        try:
            riding_out(f"shard {shard} of round {round_}", train_and_store)
        except OutageTooLong as exc:
            leave_to_watchdog(exc)
        except train.DeviceUnavailable as exc:
            fail_job(job_id, "device_unavailable", str(exc))
        except Exception as exc:
            retry_if_stale(self, exc)
            # Returning normally lets the chord's merge run; it sees the failed job and stops.
            logger.exception("shard %s of round %s failed for job %s", shard, round_, job_id)
            fail_job(job_id, "shard_failed", f"shard {shard}, round {round_}: {exc}")


def _withdraw_if_late(job_id: str, round_: int) -> None:
    """A result written just after its job moved on is removed again (see
    `withdraw_late_result`). With the database down there is no telling: the result
    stays, under the parameter TTL, rather than holding the worker through the outage."""
    params = _params()
    try:
        with session_scope() as session:
            job = JobRepository(session, SYSTEM).get(job_id)
    except Exception as exc:
        if not is_outage(exc):
            raise
        logger.warning("could not check the job after storing a shard: %s", exc)
        return
    if not train.round_still_open(job, round_):
        train.withdraw_late_result(params, job, job_id, round_)


@celery_app.task(name=TaskName.MERGE_ROUND.value, bind=True)
def merge_round(self: Task, job_id: str, round_: int) -> None:
    with log_ids(job_id=job_id, round=round_):
        _merge_round(self, job_id, round_)


def _merge_round(self: Task, job_id: str, round_: int) -> None:
    params = _params()

    def merge_and_record() -> None:
        with session_scope() as session:
            work = merge.read_merge_input(session, job_id, round_)
        if work is None:
            return
        # Aggregation, checkpoint and validation run with no transaction open; the
        # record step re-checks the fence under the row lock.
        merged = merge.compute_merge(work, _store(), params)
        with session_scope() as session:
            step = merge.record_merge(session, merged)
            _send_after_commit(session, job_id, step)
            step_sweep_after_commit(session, _dispatcher(), job_id)
            if step.next != "none":
                # Shard results and the previous global are no longer needed once committed.
                enqueue_after_commit(session, lambda: params.delete_round(job_id, round_ - 1))
                _record_round_after_commit(session, job_id, round_)

    try:
        riding_out(f"the merge of round {round_}", merge_and_record)
    except OutageTooLong as exc:
        leave_to_watchdog(exc)
    except IntegrityError:
        logger.info("round %s of job %s was already merged", round_, job_id)
    except Exception as exc:
        retry_if_stale(self, exc)
        logger.exception("merge of round %s failed for job %s", round_, job_id)
        fail_job(job_id, "merge_failed", f"round {round_}: {exc}")


def _record_round_after_commit(session: Session, job_id: str, round_: int) -> None:
    """Observe the round's duration and its shards' throughput once its merge commits:
    a redelivered or rolled-back merge is then never counted."""
    repository = JobRepository(session, SYSTEM)
    job, merged = repository.get(job_id), repository.round(job_id, round_)
    if job is None or merged is None:
        return
    epochs = JobSpec.stored(job.spec).passes_per_round
    rates = [
        shard["examples"] * epochs / shard["seconds"]
        for shard in merged.shards
        if shard["seconds"] > 0
    ]
    seconds = merged.seconds

    def record() -> None:
        logger.info("round %s merged, %.2f s after its dispatch", round_, seconds)
        try:
            _metrics().record_merged_round(seconds, rates)
        except redis.RedisError:
            # Metrics are not worth failing a committed round for.
            logger.warning("could not record the metrics of round %s", round_, exc_info=True)

    enqueue_after_commit(session, record)


@celery_app.task(name=TaskName.FINALIZE_JOB.value, bind=True)
def finalize_job(self: Task, job_id: str) -> None:
    params = _params()
    with log_ids(job_id=job_id):

        def finish() -> None:
            finalize.finalize_in_steps(
                session_scope,
                _store(),
                job_id,
                _alias_generations(),
                on_recorded=lambda session: enqueue_after_commit(
                    session, lambda: params.delete_job(job_id)
                ),
            )
            # Registered, or failed on a lost checkpoint: either way the trial ended.
            with session_scope() as session:
                step_sweep_after_commit(session, _dispatcher(), job_id)

        try:
            riding_out("finalize", finish)
        except OutageTooLong as exc:
            leave_to_watchdog(exc)
        except Exception as exc:
            retry_if_stale(self, exc)
            logger.exception("finalize failed for job %s", job_id)
            fail_job(job_id, "finalize_failed", str(exc))


@celery_app.task(name=TaskName.WATCHDOG.value)
def watchdog() -> None:
    settings = get_settings()
    deadline_s, max_attempts = settings.stage_deadline_s, settings.max_attempts
    dispatcher = _dispatcher()
    with session_scope() as session:
        for job_id, step in sweep(session, deadline_s=deadline_s, max_attempts=max_attempts):
            if step == "prepare":
                send_after_commit(session, dispatcher, "prepare", job_id=job_id)
            elif isinstance(step, next_step.NextStep):
                _send_after_commit(session, job_id, step)
    with session_scope() as session:
        for dataset_id in sweep_datasets(
            session, deadline_s=deadline_s, max_attempts=max_attempts, store=_store()
        ):
            send_after_commit(session, dispatcher, "ingest", dataset_id=dataset_id)
    with session_scope() as session:
        for sweep_id in SweepRepository(session, SYSTEM).active_ids():
            send_after_commit(session, dispatcher, "sweep_step", sweep_id=sweep_id)
    with session_scope() as session:
        for batch_id in sweep_batch_predictions(
            session, deadline_s=deadline_s, max_attempts=max_attempts
        ):
            send_after_commit(session, dispatcher, "batch_predict", batch_id=batch_id)


@celery_app.task(name=TaskName.STEP_SWEEP.value, bind=True)
def step_sweep(self: Task, sweep_id: str) -> None:
    """Idempotent, and serialised by the sweep's row lock: a second step at once
    waits, then finds what the first did."""
    with log_ids(sweep_id=sweep_id):

        def run() -> None:
            with session_scope() as session:
                sweep_step.step_sweep(session, _dispatcher(), sweep_id)

        try:
            riding_out("the sweep's step", run)
        except OutageTooLong as exc:
            leave_to_watchdog(exc)
        except IntegrityError:
            logger.info("another step of sweep %s asked for the same trial first", sweep_id)
        except Exception as exc:
            retry_if_stale(self, exc)
            logger.exception("the step of sweep %s failed", sweep_id)
            fail_sweep(sweep_id, "step_failed", f"{type(exc).__name__}: {exc}")


@celery_app.task(name=TaskName.RELAY_OUTBOX.value)
def relay_outbox() -> None:
    """Send what the broker refused while it was down: the API and the tasks commit
    their messages to the outbox and try once; this catches every one they missed."""
    with session_scope() as session:
        sent = relay_pending(session, _dispatcher())
    if sent:
        logger.info("relayed %s outbox message(s)", sent)


@celery_app.task(name=TaskName.BATCH_PREDICT.value, bind=True)
def batch_predict(self: Task, batch_id: str) -> None:
    with log_ids(batch_id=batch_id):
        try:
            with session_scope() as session:
                batch.mark_running(session, batch_id)
            with session_scope() as session:
                batch.run_batch_prediction(session, _store(), batch_id)
        except Exception as exc:
            retry_if_stale(self, exc)
            logger.exception("batch prediction %s failed", batch_id)
            with session_scope() as session:
                batch.mark_failed(session, batch_id, f"{type(exc).__name__}: {exc}")
