"""Concurrent uploads per tenant (`max_concurrent_uploads`), counted in Redis so that
every API process shares one count.

Each streaming upload holds a lease: a member of the tenant's sorted set, scored with
its expiry. A lease is renewed while bytes keep arriving and removed when the upload
ends; one whose API process died (SIGKILL, OOM) is not renewed and stops counting once
it expires, so a crash cannot leak a slot for good.
"""

import logging
import time
import uuid
from collections.abc import AsyncIterator

import redis
from starlette.concurrency import run_in_threadpool

from app.errors import APIError

logger = logging.getLogger(__name__)

# Seconds a client is told to wait: an upload in flight may end at any moment.
RETRY_AFTER_S = 5
# A lease is renewed at most this often, on a chunk's arrival. Chunks arrive at least
# every upload_idle_timeout_s (or the upload is abandoned), so a live lease is renewed
# within idle + RENEW_EVERY_S, well inside its life of idle + LEASE_MARGIN_S.
RENEW_EVERY_S = 15.0
LEASE_MARGIN_S = 60.0

# Drop expired leases, count the live ones, add this one if there is room. One script,
# so two processes cannot both take the last slot. Redis's clock scores the leases, so
# API hosts whose clocks differ still agree on which have expired.
_ACQUIRE = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""

_RENEW = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then
  redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[1]), ARGV[2])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
end
return 1
"""


def _key(tenant_id: str) -> str:
    return f"shardtrain:uploads:{tenant_id}"


class UploadLease:
    """One upload's slot; `held` is False where Redis could not be asked (fail open)."""

    def __init__(self, slots: "UploadSlots", tenant_id: str, lease_id: str, held: bool) -> None:
        self._slots = slots
        self.tenant_id = tenant_id
        self.lease_id = lease_id
        self.held = held
        self._renewed_at = time.monotonic()

    async def renewing(self, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """The body, renewing the lease as it arrives."""
        async for chunk in body:
            if self.held and time.monotonic() - self._renewed_at >= self._slots.renew_every_s:
                self._renewed_at = time.monotonic()
                # A thread: a Redis that stalls must not stall the event loop.
                await run_in_threadpool(self._slots.renew, self)
            yield chunk

    def release(self) -> None:
        if self.held:
            self.held = False
            self._slots.release(self)


def lease_seconds(idle_timeout_s: float) -> float:
    """How long a lease lives unrenewed: past the longest gap between two renewals."""
    return idle_timeout_s + LEASE_MARGIN_S


class UploadSlots:
    def __init__(self, client: redis.Redis, lease_s: float) -> None:
        self._redis = client
        self._lease_ms = max(1, int(lease_s * 1000))
        self.renew_every_s = min(RENEW_EVERY_S, lease_s / 4)
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)

    def acquire(self, tenant_id: str, limit: int) -> UploadLease:
        """A slot for one upload, or 429 too_many_uploads when the tenant has `limit`
        uploads streaming already."""
        lease_id = uuid.uuid4().hex
        try:
            taken = self._acquire(keys=[_key(tenant_id)], args=[limit, self._lease_ms, lease_id])
        except redis.RedisError:
            # Fail open, as the rate limiter does: uploads need PostgreSQL and storage,
            # not Redis, and the outbox sends their ingest once Redis is back. The
            # per-minute rate limit and the storage quota still bound them.
            logger.warning("upload slots unavailable; an upload for %s not counted", tenant_id)
            return UploadLease(self, tenant_id, lease_id, held=False)
        if not taken:
            raise APIError(
                429,
                "too_many_uploads",
                f"This account already has {limit} uploads in progress, its "
                f"max_concurrent_uploads; retry in {RETRY_AFTER_S} s, once one has finished.",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        return UploadLease(self, tenant_id, lease_id, held=True)

    def renew(self, lease: UploadLease) -> None:
        try:
            self._renew(keys=[_key(lease.tenant_id)], args=[self._lease_ms, lease.lease_id])
        except redis.RedisError:
            # The upload goes on; its lease lapses if Redis stays away that long.
            logger.warning("upload slot for %s not renewed", lease.tenant_id)

    def release(self, lease: UploadLease) -> None:
        try:
            self._redis.zrem(_key(lease.tenant_id), lease.lease_id)
        except redis.RedisError:
            # It expires on its own.
            logger.warning("upload slot for %s not released; it expires", lease.tenant_id)
