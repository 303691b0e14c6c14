"""Thin Celery tasks: ids in, state re-read in SQL, work done by `app.jobs` and
`app.datasets`, next messages sent only after the commit."""

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from functools import cache

import redis
import torch
from celery import Task
from celery.signals import worker_process_init, worker_ready, worker_shutdown
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from app.config import get_settings
from app.datasets.service import ingest_dataset as ingest
from app.datasets.service import mark_failed
from app.db import enqueue_after_commit, session_scope
from app.dispatch import Dispatcher
from app.fleet import HEARTBEAT_S, WorkerRegistry, count_cuda_devices
from app.jobs import finalize, rounds
from app.jobs.lifecycle import fail
from app.jobs.repository import JobRepository
from app.jobs.watchdog import sweep, sweep_batch_predictions, sweep_datasets
from app.observability.logging import log_ids
from app.observability.worker_metrics import WorkerMetrics
from app.outbox import relay_pending, send_after_commit
from app.paramstore import ParamStore
from app.registry import batch
from app.storage import BlobStore
from workers.celery_app import celery_app

logger = logging.getLogger(__name__)


@worker_process_init.connect
def _one_thread_per_process(**_: object) -> None:
    # Each prefork pool process trains one shard; more threads per process only contend.
    torch.set_num_threads(1)


@worker_ready.connect
def _announce(sender: object, **_: object) -> None:
    """Tell the API what this worker can run, and keep saying it while it lives."""
    hostname = str(getattr(sender, "hostname", socket.gethostname()))
    registry = WorkerRegistry(redis.Redis.from_url(get_settings().broker_url))
    cuda_devices = count_cuda_devices()

    def heartbeat() -> None:
        while True:
            try:
                registry.announce(hostname, cuda_devices)
            except redis.RedisError:
                logger.warning("could not announce worker %s", hostname)
            time.sleep(HEARTBEAT_S)

    threading.Thread(target=heartbeat, name="shardtrain-heartbeat", daemon=True).start()
    _announced.append((registry, hostname))


_announced: list[tuple[WorkerRegistry, str]] = []


@worker_shutdown.connect
def _withdraw(**_: object) -> None:
    for registry, hostname in _announced:
        with contextlib.suppress(redis.RedisError):
            registry.withdraw(hostname)


@cache
def _store() -> BlobStore:
    return BlobStore(get_settings().blob_dir)


@cache
def _params() -> ParamStore:
    settings = get_settings()
    return ParamStore(
        redis.Redis.from_url(settings.broker_url),
        chunk_bytes=settings.param_chunk_bytes,
        ttl_s=settings.param_ttl_s,
    )


@cache
def _metrics() -> WorkerMetrics:
    return WorkerMetrics(redis.Redis.from_url(get_settings().broker_url, socket_timeout=5))


def _dispatcher() -> Dispatcher:
    return Dispatcher(celery_app)


def _retry_if_stale(task: Task, exc: Exception) -> None:
    """Another transaction changed the row first (a cancel, a watchdog sweep): run the
    task again on fresh state instead of failing the job for it."""
    if isinstance(exc, StaleDataError):
        raise task.retry(countdown=1, max_retries=10, exc=exc)


class RedisOutage(RuntimeError):
    """Redis stayed unreachable for longer than `REDIS_OUTAGE_GRACE_S`."""


def _riding_out_redis(stage: str, run: Callable[[], None]) -> None:
    """Run a stage again, with backoff, while Redis is unreachable (a restart, a failover):
    every stage is idempotent, so a rerun after a half-done attempt is safe. Failing the
    job at the first refused connection would turn a short blip into a lost job."""
    give_up_at = time.monotonic() + get_settings().redis_outage_grace_s
    delay = 0.5
    while True:
        try:
            run()
            return
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if time.monotonic() + delay > give_up_at:
                raise RedisOutage(f"Redis unreachable during {stage}: {exc}") from exc
            logger.warning("Redis unreachable during %s (%s); again in %.1f s", stage, exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 8.0)


def _leave_to_watchdog(exc: RedisOutage) -> None:
    # Not the job's fault: the watchdog sends the stage again once its deadline passes,
    # by which time Redis is back or the job fails as worker_lost after its attempts.
    logger.error("%s; leaving the stage to the watchdog", exc)


def _fail_job(job_id: str, code: str, message: str) -> None:
    with session_scope() as session:
        job = JobRepository(session).get(job_id, for_update=True)
        if job is not None:
            fail(job, code, message)


@celery_app.task(name="shardtrain.ingest_dataset", bind=True)
def ingest_dataset(self: Task, dataset_id: str) -> None:
    with log_ids(dataset_id=dataset_id):
        try:
            with session_scope() as session:
                ingest(session, _store(), dataset_id)
        except Exception as exc:
            _retry_if_stale(self, exc)
            # Anything but a bad file (those are IngestError, handled inside) is our fault:
            # the dataset still ends `failed`, never `processing` forever.
            logger.exception("ingest crashed for dataset %s", dataset_id)
            with session_scope() as session:
                mark_failed(
                    session, dataset_id, f"internal error during ingest: {type(exc).__name__}"
                )


@celery_app.task(name="shardtrain.prepare_job", bind=True, max_retries=None)
def prepare_job(self: Task, job_id: str) -> None:
    with log_ids(job_id=job_id):
        _prepare_job(self, job_id)


def _prepare_job(self: Task, job_id: str) -> None:
    with session_scope() as session:
        step = rounds.begin_prepare(session, job_id)
    if step == "wait":
        # The dataset is still being ingested: look again shortly, without blocking a worker.
        # Ingest always ends ready or failed, so this stops.
        raise self.retry(countdown=2)
    if step != "build":
        return

    def build() -> None:
        with session_scope() as session:
            first_round = rounds.build_job_shards(session, _store(), _params(), job_id)
            _send_after_commit(session, job_id, first_round)

    try:
        _riding_out_redis("prepare", build)
    except RedisOutage as exc:
        _leave_to_watchdog(exc)
    except Exception as exc:
        _retry_if_stale(self, exc)
        logger.exception("prepare failed for job %s", job_id)
        _fail_job(job_id, "prepare_failed", f"{type(exc).__name__}: {exc}")


def _send_after_commit(session: Session, job_id: str, step: rounds.NextStep) -> None:
    if step.next == "round":
        send_after_commit(
            session,
            _dispatcher(),
            "round",
            job_id=job_id,
            round_=step.round,
            shards=step.shards,
            device=step.device,
            attempt=step.attempt,
        )
    elif step.next == "finalize":
        send_after_commit(session, _dispatcher(), "finalize", job_id=job_id)


@celery_app.task(name="shardtrain.train_shard", bind=True)
def train_shard(self: Task, job_id: str, round_: int, shard: int) -> None:
    with log_ids(job_id=job_id, round=round_, shard=shard):

        def train() -> None:
            with session_scope() as session:
                rounds.train_shard(session, _store(), _params(), job_id, round_, shard)

        try:
            _riding_out_redis(f"shard {shard} of round {round_}", train)
        except RedisOutage as exc:
            _leave_to_watchdog(exc)
        except rounds.DeviceUnavailable as exc:
            _fail_job(job_id, "device_unavailable", str(exc))
        except Exception as exc:
            _retry_if_stale(self, exc)
            # Returning normally lets the chord's merge run; it sees the failed job and stops.
            logger.exception("shard %s of round %s failed for job %s", shard, round_, job_id)
            _fail_job(job_id, "shard_failed", f"shard {shard}, round {round_}: {exc}")


@celery_app.task(name="shardtrain.merge_round", bind=True)
def merge_round(self: Task, job_id: str, round_: int) -> None:
    with log_ids(job_id=job_id, round=round_):
        _merge_round(self, job_id, round_)


def _merge_round(self: Task, job_id: str, round_: int) -> None:
    params = _params()

    def merge() -> None:
        with session_scope() as session:
            step = rounds.merge_round(session, _store(), params, job_id, round_)
            _send_after_commit(session, job_id, step)
            if step.next != "none":
                # Shard results and the previous global are no longer needed once committed.
                enqueue_after_commit(session, lambda: params.delete_round(job_id, round_ - 1))
                _record_round_after_commit(session, job_id, round_)

    try:
        _riding_out_redis(f"the merge of round {round_}", merge)
    except RedisOutage as exc:
        _leave_to_watchdog(exc)
    except IntegrityError:
        logger.info("round %s of job %s was already merged", round_, job_id)
    except Exception as exc:
        _retry_if_stale(self, exc)
        logger.exception("merge of round %s failed for job %s", round_, job_id)
        _fail_job(job_id, "merge_failed", f"round {round_}: {exc}")


def _record_round_after_commit(session: Session, job_id: str, round_: int) -> None:
    """Observe the round's duration and its shards' throughput once its merge commits:
    a redelivered or rolled-back merge is then never counted."""
    repository = JobRepository(session)
    job, merged = repository.get(job_id), repository.round(job_id, round_)
    if job is None or merged is None:
        return
    epochs = int(job.spec["training"]["local_epochs"])
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


@celery_app.task(name="shardtrain.finalize_job", bind=True)
def finalize_job(self: Task, job_id: str) -> None:
    params = _params()
    with log_ids(job_id=job_id):

        def finish() -> None:
            with session_scope() as session:
                if finalize.finalize_job(session, _store(), job_id):
                    enqueue_after_commit(session, lambda: params.delete_job(job_id))

        try:
            _riding_out_redis("finalize", finish)
        except RedisOutage as exc:
            _leave_to_watchdog(exc)
        except Exception as exc:
            _retry_if_stale(self, exc)
            logger.exception("finalize failed for job %s", job_id)
            _fail_job(job_id, "finalize_failed", str(exc))


@celery_app.task(name="shardtrain.watchdog")
def watchdog() -> None:
    settings = get_settings()
    deadline_s, max_attempts = settings.stage_deadline_s, settings.max_attempts
    dispatcher = _dispatcher()
    with session_scope() as session:
        for job_id, step in sweep(session, deadline_s=deadline_s, max_attempts=max_attempts):
            if step == "prepare":
                send_after_commit(session, dispatcher, "prepare", job_id=job_id)
            elif isinstance(step, rounds.NextStep):
                _send_after_commit(session, job_id, step)
    with session_scope() as session:
        for dataset_id in sweep_datasets(session, deadline_s=deadline_s, max_attempts=max_attempts):
            send_after_commit(session, dispatcher, "ingest", dataset_id=dataset_id)
    with session_scope() as session:
        for batch_id in sweep_batch_predictions(
            session, deadline_s=deadline_s, max_attempts=max_attempts
        ):
            send_after_commit(session, dispatcher, "batch_predict", batch_id=batch_id)


@celery_app.task(name="shardtrain.relay_outbox")
def relay_outbox() -> None:
    """Send what the broker refused while it was down: the API and the tasks commit
    their messages to the outbox and try once; this catches every one they missed."""
    with session_scope() as session:
        sent = relay_pending(session, _dispatcher())
    if sent:
        logger.info("relayed %s outbox message(s)", sent)


@celery_app.task(name="shardtrain.batch_predict", bind=True)
def batch_predict(self: Task, batch_id: str) -> None:
    with log_ids(batch_id=batch_id):
        try:
            with session_scope() as session:
                batch.mark_running(session, batch_id)
            with session_scope() as session:
                batch.run_batch_prediction(session, _store(), batch_id)
        except Exception as exc:
            _retry_if_stale(self, exc)
            logger.exception("batch prediction %s failed", batch_id)
            with session_scope() as session:
                batch.mark_failed(session, batch_id, f"{type(exc).__name__}: {exc}")
