"""Series computed when Prometheus scrapes the API: jobs by status from SQL, Celery
queue depths from Redis, and the histograms the workers keep in Redis."""

import logging
from collections.abc import Iterator

import redis
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.database_health import DatabaseHealth, is_unavailable
from app.jobs.repository import JobRepository
from app.messaging import QUEUES
from app.observability.beat_heartbeat import BeatMonitor
from app.observability.worker_metrics import WORKER_HISTOGRAMS, WorkerMetrics
from app.tables.statuses import JobStatus
from app.tenancy.scope import SYSTEM

logger = logging.getLogger(__name__)


# kombu's Redis transport keeps a queue's messages sent with a priority in lists of
# their own, named `<queue>\x06\x16<step>` for the non-zero steps of [0, 3, 6, 9].
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


class ShardtrainCollector(Collector):
    """One collector for all three sources, so `shardtrain_metrics_source_up` is one
    family: a scrape still answers when SQL or Redis is down, and says which."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        client: redis.Redis,
        health: DatabaseHealth | None = None,
        beat: BeatMonitor | None = None,
    ) -> None:
        self.sessions = sessions
        self.client = client
        self.health = health
        self.beat = beat

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "shardtrain_metrics_source_up",
            "1 if the source answered during this scrape; its series are missing if not.",
            labels=["source"],
        )
        try:
            yield self._jobs()
            up.add_metric(["sql"], 1)
        except SQLAlchemyError as exc:
            if is_unavailable(exc) and self.health is not None:
                # One line per outage (DatabaseHealth), not a traceback per scrape.
                self.health.failed(exc)
            else:
                logger.warning("metrics: the database did not answer", exc_info=True)
            up.add_metric(["sql"], 0)
        try:
            yield from self._redis_families()
            up.add_metric(["redis"], 1)
        except redis.RedisError:
            logger.warning("metrics: Redis did not answer", exc_info=True)
            up.add_metric(["redis"], 0)
        yield up

    def _beat(self) -> Metric:
        family = GaugeMetricFamily(
            "shardtrain_beat_last_run_seconds",
            "Unix time of Celery beat's last scheduler tick (its heartbeat in Redis); no "
            "sample if beat never ticked. Alert on time() minus this, or on its absence.",
        )
        if self.beat is not None:
            status = self.beat.status()
            if status.state == "unknown":
                # Raised as Redis' failure, so the source is marked down.
                raise redis.ConnectionError("Redis did not answer the heartbeat read")
            if status.last_tick is not None:
                family.add_metric([], status.last_tick)
        return family

    def _jobs(self) -> Metric:
        with self.sessions() as session:
            counts = JobRepository(session, SYSTEM).count_by_status()
        family = GaugeMetricFamily(
            "shardtrain_jobs", "Jobs by status, all tenants, counted in SQL.", labels=["status"]
        )
        # Every status is exposed, at 0 when no job has it, so that a rate or an alert
        # on `shardtrain_jobs{status="failed"}` has a series before the first failure.
        for status in sorted({status.value for status in JobStatus} | set(counts)):
            family.add_metric([status], counts.get(status, 0))
        return family

    def _redis_families(self) -> list[Metric]:
        # Read everything before yielding anything, so a Redis error part-way leaves
        # no half-written family in the exposition.
        pipe = self.client.pipeline(transaction=False)
        for queue in QUEUES:
            for suffix in _PRIORITY_SUFFIXES:
                pipe.llen(queue + suffix)
        lengths = pipe.execute()
        depth = GaugeMetricFamily(
            "shardtrain_celery_queue_depth",
            "Messages waiting in each Celery queue (Redis list length), not yet taken by a worker.",
            labels=["queue"],
        )
        per_queue = len(_PRIORITY_SUFFIXES)
        for i, queue in enumerate(QUEUES):
            depth.add_metric([queue], sum(lengths[i * per_queue : (i + 1) * per_queue]))
        families: list[Metric] = [depth, self._beat()]
        metrics = WorkerMetrics(self.client)
        for spec in WORKER_HISTOGRAMS:
            snapshot = metrics.read(spec)
            families.append(
                HistogramMetricFamily(
                    spec.name, spec.documentation, buckets=snapshot.buckets, sum_value=snapshot.sum
                )
            )
        return families
