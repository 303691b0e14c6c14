"""Beat's heartbeat: beat writes the time of each scheduler tick to Redis; the API reads it
for `/readyz` (a `beat` check) and `/metrics` (`shardtrain_beat_last_run_seconds`), and
logs a warning once when it goes stale.

Without it a missing beat was silent: nothing failed, the watchdog simply never ran, and a
job whose stage message was lost stayed `queued` until someone started beat again.
"""

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from typing import Literal

import redis

logger = logging.getLogger(__name__)

HEARTBEAT_KEY = "shardtrain:beat:last_tick"
# Beat ticks at least once per watchdog interval (the watchdog is one of its entries);
# three missed intervals is not a slow tick but a beat that is gone.
STALE_AFTER_INTERVALS = 3

BeatState = Literal["ok", "stale", "missing", "unknown"]


def record_tick(client: redis.Redis, at: float | None = None) -> None:
    client.set(HEARTBEAT_KEY, repr(time.time() if at is None else at))


def last_tick(client: redis.Redis) -> float | None:
    """Unix time of beat's last tick, None if beat never ticked against this Redis."""
    raw = client.get(HEARTBEAT_KEY)
    return float(raw) if raw is not None else None


@dataclass(frozen=True)
class BeatStatus:
    state: BeatState
    last_tick: float | None
    age_s: float | None

    def describe(self) -> str:
        if self.state == "stale":
            return f"stale: last tick {self.age_s:.0f} s ago"
        if self.state == "missing":
            return "missing: beat has never ticked"
        if self.state == "unknown":
            return "unknown: Redis unreachable"
        return "ok"


class BeatMonitor:
    """Judges the heartbeat each time /readyz or /metrics asks, and logs the change from
    fresh to stale (and back) once per episode, not once per probe."""

    def __init__(self, client: redis.Redis, stale_after_s: float) -> None:
        self.client = client
        self.stale_after_s = stale_after_s
        # A beat that has not ticked yet is only missing once it had time to tick.
        self._started = time.time()
        self._alerting = False
        self._lock = threading.Lock()

    def status(self) -> BeatStatus:
        try:
            tick = last_tick(self.client)
        except redis.RedisError:
            return BeatStatus("unknown", None, None)
        now = time.time()
        if tick is None:
            waited = now - self._started
            state: BeatState = "missing" if waited > self.stale_after_s else "ok"
            found = BeatStatus(state, None, None)
        else:
            age = max(0.0, now - tick)
            found = BeatStatus("stale" if age > self.stale_after_s else "ok", tick, age)
        self._log_change(found)
        return found

    async def watch(self, every_s: float) -> None:
        """Judge the heartbeat every `every_s` while the app runs, so that a stale beat
        is logged where nothing probes /readyz or scrapes /metrics (`make run`)."""
        while True:
            # In a thread: the Redis read may wait on a dead host for its timeout.
            await asyncio.to_thread(self.status)
            await asyncio.sleep(every_s)

    def _log_change(self, found: BeatStatus) -> None:
        alerting = found.state in ("stale", "missing")
        with self._lock:
            if alerting == self._alerting:
                return
            self._alerting = alerting
        if alerting:
            logger.warning(
                "beat is %s (expected a tick every few seconds, stale after %.0f s): the "
                "watchdog and the outbox relay are not running; start `celery -A "
                "workers.celery_app beat`",
                found.describe(),
                self.stale_after_s,
            )
        else:
            logger.warning("beat is ticking again")
