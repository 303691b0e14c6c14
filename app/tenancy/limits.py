"""Quotas and rate limits, per tenant: the settings' defaults, overridden one by one by
the tenant's own `limits`."""

import logging
import time
from dataclasses import dataclass

import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.datasets.repository import DatasetRepository
from app.errors import APIError
from app.jobs.repository import JobRepository
from app.sweeps.repository import SweepRepository
from app.tables import Tenant
from app.tenancy.repository import lock_tenant
from app.tenancy.scope import Scope

LIMIT_NAMES = (
    "max_running_jobs",
    "max_stored_bytes",
    "max_shards",
    "max_rounds",
    "max_parameters",
    "predict_per_minute",
    "upload_per_minute",
    "max_concurrent_uploads",
)
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    max_running_jobs: int
    max_stored_bytes: int
    max_shards: int
    max_rounds: int
    max_parameters: int
    predict_per_minute: int
    upload_per_minute: int
    max_concurrent_uploads: int


def limits_for(session: Session, settings: Settings, tenant_id: str) -> Limits:
    own = session.scalars(select(Tenant.limits).where(Tenant.id == tenant_id)).one_or_none() or {}
    defaults = {
        "max_running_jobs": settings.quota_max_running_jobs,
        "max_stored_bytes": settings.quota_max_stored_bytes,
        "max_shards": settings.quota_max_shards,
        "max_rounds": settings.quota_max_rounds,
        "max_parameters": settings.quota_max_parameters,
        "predict_per_minute": settings.rate_limit_predict_per_minute,
        "upload_per_minute": settings.rate_limit_upload_per_minute,
        "max_concurrent_uploads": settings.quota_max_concurrent_uploads,
    }
    return Limits(**{**defaults, **{k: int(v) for k, v in own.items() if k in defaults}})


def check_job_quota(
    session: Session,
    limits: Limits,
    tenant_id: str,
    *,
    shards: int,
    rounds: int,
    rounds_param: str = "training.rounds",
) -> None:
    check_job_size(limits, shards=shards, rounds=rounds, rounds_param=rounds_param)
    check_running_jobs(session, limits, tenant_id)


def check_job_size(
    limits: Limits,
    *,
    shards: int,
    rounds: int,
    rounds_param: str = "training.rounds",
    prefix: str = "",
) -> None:
    """`prefix` places the fields in a larger request (a sweep's `space.`)."""
    if shards > limits.max_shards:
        raise APIError(
            422,
            "quota_exceeded",
            f"{shards} shards exceed this account's max_shards of {limits.max_shards}.",
            f"{prefix}distribution.shards",
        )
    if rounds > limits.max_rounds:
        raise APIError(
            422,
            "quota_exceeded",
            f"{rounds_param} {rounds} exceeds this account's max_rounds of {limits.max_rounds}.",
            f"{prefix}{rounds_param}",
        )


def check_running_jobs(
    session: Session, limits: Limits, tenant_id: str, *, adding: int = 1
) -> None:
    """Refuse `adding` more running jobs past `max_running_jobs`: the tenant's unfinished
    jobs outside sweeps, plus each unfinished sweep's parallelism (its trials run inside
    that share)."""
    # Counted under the tenant's lock, held until the caller commits its job:
    # concurrent creates for one tenant queue here instead of all counting the same.
    lock_tenant(session, tenant_id)
    scope = Scope.tenant(tenant_id)
    jobs = JobRepository(session, scope).count_active()
    held = SweepRepository(session, scope).reserved_jobs()
    if jobs + held + adding > limits.max_running_jobs:
        sweeps = f" and {held} held by running sweeps" if held else ""
        raise APIError(
            429,
            "quota_exceeded",
            f"This account already has {jobs} unfinished jobs{sweeps}; with {adding} more it "
            f"would pass its max_running_jobs of {limits.max_running_jobs}. Wait for one to "
            "end or cancel one.",
        )


def stored_bytes(session: Session, tenant_id: str) -> int:
    """Bytes the tenant's live datasets hold; a total that must stay true until the
    caller commits needs lock_tenant first."""
    return DatasetRepository(session, Scope.tenant(tenant_id)).stored_bytes()


class RateLimiter:
    """A fixed one-minute window per tenant and action, counted in Redis so every API
    process shares it."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def hit(self, tenant_id: str, action: str, per_minute: int) -> None:
        now = time.time()
        window = int(now // 60)
        key = f"shardtrain:rate:{tenant_id}:{action}:{window}"
        try:
            with self._redis.pipeline() as pipe:
                pipe.incr(key)
                pipe.expire(key, 120)
                count, _ = pipe.execute()
        except redis.RedisError:
            # Fail open: a Redis outage must not turn every predict into an error;
            # /readyz reports it.
            logger.warning("rate limiter unavailable; %s for %s not counted", action, tenant_id)
            return
        if int(count) > per_minute:
            retry_after = max(1, int((window + 1) * 60 - now) + 1)
            raise APIError(
                429,
                "rate_limited",
                f"More than {per_minute} {action} requests this minute (this account's "
                f"{action}_per_minute); retry in {retry_after} s.",
                headers={"Retry-After": str(retry_after)},
            )
