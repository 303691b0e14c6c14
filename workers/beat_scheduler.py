"""Celery beat's scheduler, writing a heartbeat to Redis on every tick (see
app/observability/beat_heartbeat.py). Selected by `beat_scheduler` in celery_app."""

import logging
from typing import Any

import redis
from celery.beat import PersistentScheduler

from app.observability.beat_heartbeat import record_tick

logger = logging.getLogger(__name__)


class HeartbeatScheduler(PersistentScheduler):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Short timeouts: a Redis that drops packets must not hold beat's loop, whose
        # sends would then wait behind the heartbeat.
        self._heartbeat = redis.Redis.from_url(
            self.app.conf.broker_url, socket_timeout=2, socket_connect_timeout=1
        )
        self._heartbeat_failing = False

    def tick(self, *args: Any, **kwargs: Any) -> float:
        # Before the tick's own work, so a tick that then fails still shows beat alive;
        # its failure is beat's own log's business.
        try:
            record_tick(self._heartbeat)
            if self._heartbeat_failing:
                self._heartbeat_failing = False
                logger.info("beat heartbeat written again")
        except redis.RedisError as exc:
            if not self._heartbeat_failing:
                self._heartbeat_failing = True
                logger.warning("beat heartbeat not written (Redis: %s); retried every tick", exc)
        interval: float = super().tick(*args, **kwargs)
        return interval
