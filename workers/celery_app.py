"""The worker's Celery application, started as ``celery -A workers.celery_app worker``
(or ``beat``): the app-side factory's configuration plus what only a worker or beat
process needs, the task modules, beat's heartbeat scheduler and the logging hook."""

from typing import Any

from celery.signals import setup_logging

from app.config import get_settings
from app.messaging import create_celery
from app.observability.logging import configure_logging

celery_app = create_celery(get_settings())
celery_app.conf.update(
    include=["workers.tasks"],
    # Writes beat's heartbeat to Redis on every tick, for /readyz and /metrics.
    beat_scheduler="workers.beat_scheduler:HeartbeatScheduler",
)


@setup_logging.connect
def _configure_logging(
    loglevel: int | str | None = None, logfile: str | None = None, **_: Any
) -> None:
    """With a receiver on this signal Celery configures no logging of its own, so the
    worker and beat write the API's format (plain or JSON) with the task's ids."""
    configure_logging(get_settings().log_format, loglevel or "INFO", filename=logfile)
