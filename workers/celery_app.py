"""The Celery application: Redis broker, late acks, one message prefetched at a time.

Started as ``celery -A workers.celery_app worker``. The API imports this module
only to send messages by task name; it never imports the task modules.
"""

from typing import Any

from celery import Celery
from celery.signals import setup_logging

from app.config import Settings, get_settings
from app.observability.logging import configure_logging

# `train_gpu` carries shards of `device: cuda` jobs; only workers with a GPU consume it.
QUEUES = ("ingest", "train", "train_gpu", "merge")
TASK_ROUTES = {
    "shardtrain.ingest_dataset": {"queue": "ingest"},
    "shardtrain.prepare_job": {"queue": "merge"},
    "shardtrain.train_shard": {"queue": "train"},
    "shardtrain.merge_round": {"queue": "merge"},
    "shardtrain.finalize_job": {"queue": "merge"},
    "shardtrain.watchdog": {"queue": "merge"},
    "shardtrain.relay_outbox": {"queue": "merge"},
    "shardtrain.batch_predict": {"queue": "merge"},
}


def create_celery(settings: Settings) -> Celery:
    app = Celery("shardtrain", broker=settings.broker_url, backend=settings.broker_url)
    app.conf.update(
        include=["workers.tasks"],
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
        task_default_queue="merge",
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        # Writes beat's heartbeat to Redis on every tick, for /readyz and /metrics.
        beat_scheduler="workers.beat_scheduler:HeartbeatScheduler",
        beat_schedule={
            "watchdog": {
                "task": "shardtrain.watchdog",
                "schedule": settings.watchdog_interval_s,
                # A sweep that waited longer than an interval is stale: drop it.
                "options": {"expires": settings.watchdog_interval_s},
            },
            "relay-outbox": {
                "task": "shardtrain.relay_outbox",
                "schedule": settings.outbox_relay_interval_s,
                "options": {"expires": settings.outbox_relay_interval_s},
            },
        },
    )
    return app


@setup_logging.connect
def _configure_logging(
    loglevel: int | str | None = None, logfile: str | None = None, **_: Any
) -> None:
    """With a receiver on this signal Celery configures no logging of its own, so the
    worker and beat write the API's format (plain or JSON) with the task's ids."""
    configure_logging(get_settings().log_format, loglevel or "INFO", filename=logfile)


celery_app = create_celery(get_settings())
