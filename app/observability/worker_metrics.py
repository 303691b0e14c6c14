"""Histograms observed in worker processes, kept in Redis so that the API's `/metrics`
can expose them: workers run on other hosts and Prometheus scrapes only the API.

Each histogram is one Redis hash: one field per bucket holding the count of observations
that fell in that bucket alone (not cumulative, so an observation touches one field),
plus `sum` and `count`. `read` turns it into Prometheus's cumulative `le` buckets, with
the same rule as prometheus_client: a value lands in the first bucket whose upper bound
is >= the value. Non-finite values are dropped (prometheus_client would count them).
"""

import math
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass

import redis
from prometheus_client.utils import floatToGoString

KEY_PREFIX = "shardtrain:metrics:"


@dataclass(frozen=True)
class HistogramSpec:
    name: str
    documentation: str
    # Finite upper bounds, ascending; +Inf is implied.
    buckets: tuple[float, ...]

    @property
    def key(self) -> str:
        return KEY_PREFIX + self.name

    def bucket_field(self, value: float) -> str:
        index = bisect_left(self.buckets, value)
        return "le:" + (
            floatToGoString(self.buckets[index]) if index < len(self.buckets) else "+Inf"
        )


@dataclass(frozen=True)
class HistogramSnapshot:
    buckets: list[tuple[str, float]]  # cumulative, `le` label value first, ending in +Inf
    sum: float
    count: float


ROUND_DURATION = HistogramSpec(
    "shardtrain_round_duration_seconds",
    "Seconds from a round's dispatch to the commit of its merge, queueing included; "
    "observed by the worker that merged it.",
    (0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
SHARD_SAMPLES_PER_SECOND = HistogramSpec(
    "shardtrain_shard_samples_per_second",
    "Training throughput of one shard task: examples times local epochs over the task's "
    "seconds (shard load and training); observed when its round is merged.",
    (100, 1_000, 5_000, 10_000, 50_000, 100_000, 500_000, 1_000_000, 5_000_000, 10_000_000),
)
WORKER_HISTOGRAMS = (ROUND_DURATION, SHARD_SAMPLES_PER_SECOND)


class WorkerMetrics:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def observe(self, observations: Iterable[tuple[HistogramSpec, float]]) -> None:
        """Record every observation in one MULTI/EXEC, so a scrape never sees a bucket
        counted without its `count` and `sum`."""
        pipe = self.client.pipeline(transaction=True)
        for spec, value in observations:
            if not math.isfinite(value):
                # Redis refuses a non-finite HINCRBYFLOAT, and MULTI does not roll back
                # the bucket and count already queued before it.
                continue
            pipe.hincrby(spec.key, spec.bucket_field(value), 1)
            pipe.hincrby(spec.key, "count", 1)
            pipe.hincrbyfloat(spec.key, "sum", value)
        pipe.execute()

    def record_merged_round(
        self, round_seconds: float, shard_samples_per_second: list[float]
    ) -> None:
        self.observe(
            [
                (ROUND_DURATION, round_seconds),
                *((SHARD_SAMPLES_PER_SECOND, rate) for rate in shard_samples_per_second),
            ]
        )

    def read(self, spec: HistogramSpec) -> HistogramSnapshot:
        fields = {
            key.decode() if isinstance(key, bytes) else key: float(value)
            for key, value in self.client.hgetall(spec.key).items()
        }
        cumulative = 0.0
        buckets: list[tuple[str, float]] = []
        for bound in [*(floatToGoString(b) for b in spec.buckets), "+Inf"]:
            cumulative += fields.get("le:" + bound, 0.0)
            buckets.append((bound, cumulative))
        return HistogramSnapshot(buckets, fields.get("sum", 0.0), fields.get("count", 0.0))
