"""The Celery wiring, on the app side: queue names, task names, routes and the factory
that configures a Celery app. The worker (`workers/celery_app.py`) instantiates it and
registers the tasks under these names; the API builds its own sender from the same
factory and never imports `workers`."""

from enum import StrEnum

from celery import Celery

from app.config import Settings


class Queue(StrEnum):
    INGEST = "ingest"
    TRAIN = "train"
    # Shards of `device: cuda` jobs; only workers with a GPU consume it.
    TRAIN_GPU = "train_gpu"
    MERGE = "merge"


QUEUES: tuple[str, ...] = tuple(queue.value for queue in Queue)


class TaskName(StrEnum):
    INGEST_DATASET = "shardtrain.ingest_dataset"
    PREPARE_JOB = "shardtrain.prepare_job"
    TRAIN_SHARD = "shardtrain.train_shard"
    MERGE_ROUND = "shardtrain.merge_round"
    FINALIZE_JOB = "shardtrain.finalize_job"
    WATCHDOG = "shardtrain.watchdog"
    RELAY_OUTBOX = "shardtrain.relay_outbox"
    BATCH_PREDICT = "shardtrain.batch_predict"
    STEP_SWEEP = "shardtrain.step_sweep"


TASK_ROUTES: dict[str, dict[str, str]] = {
    TaskName.INGEST_DATASET.value: {"queue": Queue.INGEST.value},
    TaskName.PREPARE_JOB.value: {"queue": Queue.MERGE.value},
    TaskName.TRAIN_SHARD.value: {"queue": Queue.TRAIN.value},
    TaskName.MERGE_ROUND.value: {"queue": Queue.MERGE.value},
    TaskName.FINALIZE_JOB.value: {"queue": Queue.MERGE.value},
    TaskName.WATCHDOG.value: {"queue": Queue.MERGE.value},
    TaskName.RELAY_OUTBOX.value: {"queue": Queue.MERGE.value},
    TaskName.BATCH_PREDICT.value: {"queue": Queue.MERGE.value},
    TaskName.STEP_SWEEP.value: {"queue": Queue.MERGE.value},
}


def create_celery(settings: Settings) -> Celery:
    """A Celery app on the settings' Redis: JSON only, late acks, one message
    prefetched at a time, and beat's schedule. Building it connects to nothing."""
    app = Celery("shardtrain", broker=settings.broker_url, backend=settings.broker_url)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        # A task is acknowledged after it finishes, and re-queued if its worker dies,
        # so a killed worker loses nothing; tasks are idempotent for the redelivery.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # One timeout for every queue: kombu's Redis transport keeps a single unacked
        # index, and each consumer restores whatever in it is older than its own timeout,
        # so a per-queue (or per-worker) value would let one worker re-queue another's
        # long task. It is sized to the longest task (VISIBILITY_TIMEOUT_S, 30 min), not
        # 6 h: a task outliving it runs twice, which the stages absorb (ingest counts the
        # copy as a delivery only if it finds the dataset still `processing`).
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        result_backend_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        result_expires=24 * 3600,
        task_routes=TASK_ROUTES,
        task_default_queue=Queue.MERGE.value,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        beat_schedule={
            "watchdog": {
                "task": TaskName.WATCHDOG.value,
                "schedule": settings.watchdog_interval_s,
                # A sweep that waited longer than an interval is stale: drop it.
                "options": {"expires": settings.watchdog_interval_s},
            },
            "relay-outbox": {
                "task": TaskName.RELAY_OUTBOX.value,
                "schedule": settings.outbox_relay_interval_s,
                "options": {"expires": settings.outbox_relay_interval_s},
            },
        },
    )
    return app
