"""The Redis-backed worker histograms against prometheus_client's own Histogram, and the
scrape-time collector against real PostgreSQL/SQLite and Redis."""

import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy.orm import Session, sessionmaker

from app.db import session_scope
from app.messaging import QUEUES
from app.observability.collectors import ShardtrainCollector
from app.observability.worker_metrics import (
    ROUND_DURATION,
    SHARD_SAMPLES_PER_SECOND,
    HistogramSpec,
    WorkerMetrics,
)
from app.runner import free_local_port
from app.tables import Dataset, Job
from app.tenancy.service import ensure_tenant

BUCKETS = (0.1, 0.5, 1.0, 2.5, 10.0)
# Below the first bound, exactly on bounds (which belong to that bucket: `le`), between
# bounds, above the last finite one, zero, negative and infinite.
VALUES = [0.05, 0.1, 0.1, 0.3, 0.5, 0.9999, 1.0, 2.5, 2.6, 9.99, 10.0, 10.01, 1e9, 0.0, -3.0]


@pytest.fixture
def spec(redis_client: redis.Redis) -> Iterator[HistogramSpec]:
    made = HistogramSpec(f"shardtrain_test_{secrets.token_hex(4)}", "test", BUCKETS)
    yield made
    redis_client.delete(made.key)


class _Snapshot:
    def __init__(self, metrics: WorkerMetrics, spec: HistogramSpec) -> None:
        self.metrics, self.spec = metrics, spec

    def collect(self) -> Iterator[Metric]:
        snapshot = self.metrics.read(self.spec)
        yield HistogramMetricFamily(
            self.spec.name, "test", buckets=snapshot.buckets, sum_value=snapshot.sum
        )


def samples(registry: CollectorRegistry, name: str) -> dict[tuple[str, str], float]:
    text = generate_latest(registry).decode()
    return {
        (sample.name, sample.labels.get("le", "")): sample.value
        for family in text_string_to_metric_families(text)
        if family.name == name
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def test_the_redis_histogram_buckets_like_prometheus_client(
    redis_client: redis.Redis, spec: HistogramSpec
) -> None:
    reference_registry = CollectorRegistry()
    reference = Histogram(spec.name, "test", buckets=BUCKETS, registry=reference_registry)
    for value in VALUES:
        reference.observe(value)
    metrics = WorkerMetrics(redis_client)
    metrics.observe((spec, value) for value in VALUES)
    ours = CollectorRegistry()
    ours.register(_Snapshot(metrics, spec))

    expected = samples(reference_registry, spec.name)
    assert samples(ours, spec.name) == expected
    # The comparison is not vacuous: every bucket and the +Inf one are exposed.
    assert expected[(f"{spec.name}_bucket", "0.1")] == 5  # 0.05, 0.1, 0.1, 0.0, -3.0
    assert expected[(f"{spec.name}_bucket", "10.0")] == 13
    assert expected[(f"{spec.name}_bucket", "+Inf")] == expected[(f"{spec.name}_count", "")] == 15


def test_non_finite_values_are_dropped_and_an_empty_histogram_reads_as_zeros(
    redis_client: redis.Redis, spec: HistogramSpec
) -> None:
    metrics = WorkerMetrics(redis_client)
    empty = metrics.read(spec)
    assert empty.count == 0 and empty.sum == 0
    assert [b for b, _ in empty.buckets] == ["0.1", "0.5", "1.0", "2.5", "10.0", "+Inf"]
    metrics.observe([(spec, float("nan")), (spec, 0.7), (spec, float("inf"))])
    snapshot = metrics.read(spec)
    assert snapshot.count == 1 and snapshot.sum == pytest.approx(0.7)
    assert dict(snapshot.buckets) == {"0.1": 0, "0.5": 0, "1.0": 1, "2.5": 1, "10.0": 1, "+Inf": 1}


def test_concurrent_writers_lose_no_observation(
    redis_client: redis.Redis, spec: HistogramSpec
) -> None:
    # Workers on many hosts write the same hash; HINCRBY is atomic, so the counts add up.
    def write(worker: int) -> None:
        metrics = WorkerMetrics(redis.Redis(connection_pool=redis_client.connection_pool))
        for i in range(200):
            metrics.observe([(spec, (worker * 200 + i) / 100)])

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(8)))
    snapshot = WorkerMetrics(redis_client).read(spec)
    assert snapshot.count == 1600
    assert snapshot.sum == pytest.approx(sum(range(1600)) / 100)
    assert dict(snapshot.buckets)["10.0"] == 1001  # 0.00 … 10.00


def _add_jobs(sessions: sessionmaker[Session], statuses: list[str]) -> None:
    with session_scope(sessions) as session:
        tenant = ensure_tenant(session, "metrics")
        dataset = Dataset(
            tenant_id=tenant.id, name="d", filename="d.csv", format="csv", sha256="0" * 64,
            raw_key="raw/d",
        )  # fmt: skip
        session.add(dataset)
        session.flush()
        for status in statuses:
            session.add(
                Job(tenant_id=tenant.id, dataset_id=dataset.id, spec={}, rounds=1, status=status)
            )


def test_the_collector_counts_jobs_in_sql_and_reads_queues_and_histograms_in_redis(
    sessions: sessionmaker[Session], redis_client: redis.Redis
) -> None:
    _add_jobs(sessions, ["succeeded", "succeeded", "failed", "running"])
    registry = CollectorRegistry()
    registry.register(ShardtrainCollector(sessions, redis_client))

    def scrape() -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
        """Sample name -> labels -> value."""
        found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
        for family in text_string_to_metric_families(generate_latest(registry).decode()):
            for s in family.samples:
                found.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
        return found

    before = scrape()
    jobs = before["shardtrain_jobs"]
    assert jobs[(("status", "succeeded"),)] == 2
    assert jobs[(("status", "failed"),)] == 1
    assert jobs[(("status", "running"),)] == 1
    assert jobs[(("status", "cancelled"),)] == 0
    depth = before["shardtrain_celery_queue_depth"]
    assert {labels[0][1] for labels in depth} == set(QUEUES)

    # Messages with a priority sit in lists of their own, and count for their queue.
    pushed = {"train": 3, "train\x06\x166": 2, "ingest": 1}
    for key, count in pushed.items():
        redis_client.rpush(key, *[b"test-message"] * count)
    try:
        WorkerMetrics(redis_client).record_merged_round(4.2, [1500.0, 70_000.0])
        after = scrape()
    finally:
        for key, count in pushed.items():
            redis_client.lrem(key, count, b"test-message")
    depth_after = after["shardtrain_celery_queue_depth"]
    assert depth_after[(("queue", "train"),)] - depth[(("queue", "train"),)] == 5
    assert depth_after[(("queue", "ingest"),)] - depth[(("queue", "ingest"),)] == 1

    def grew(sample: str, labels: tuple[tuple[str, str], ...] = ()) -> float:
        return after[sample][labels] - before[sample][labels]

    assert grew("shardtrain_round_duration_seconds_count") == 1
    assert grew("shardtrain_round_duration_seconds_sum") == pytest.approx(4.2)
    assert grew("shardtrain_round_duration_seconds_bucket", (("le", "2.5"),)) == 0
    assert grew("shardtrain_round_duration_seconds_bucket", (("le", "5.0"),)) == 1
    assert grew("shardtrain_shard_samples_per_second_count") == 2
    assert grew("shardtrain_shard_samples_per_second_bucket", (("le", "5000.0"),)) == 1
    assert grew("shardtrain_shard_samples_per_second_bucket", (("le", "100000.0"),)) == 2
    assert after["shardtrain_metrics_source_up"] == {
        (("source", "redis"),): 1,
        (("source", "sql"),): 1,
    }
    assert redis_client.exists(ROUND_DURATION.key, SHARD_SAMPLES_PER_SECOND.key) == 2


def test_a_scrape_still_answers_when_redis_is_down(sessions: sessionmaker[Session]) -> None:
    _add_jobs(sessions, ["queued"])
    # No retries: the default backoff only makes the test slower, not different.
    nowhere = redis.Redis(
        port=free_local_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    registry = CollectorRegistry()
    registry.register(ShardtrainCollector(sessions, nowhere))
    families = {
        f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())
    }
    assert "shardtrain_celery_queue_depth" not in families
    assert "shardtrain_round_duration_seconds" not in families
    assert any(
        s.labels == {"status": "queued"} and s.value == 1
        for s in families["shardtrain_jobs"].samples
    )
    up = {s.labels["source"]: s.value for s in families["shardtrain_metrics_source_up"].samples}
    assert up == {"sql": 1, "redis": 0}
