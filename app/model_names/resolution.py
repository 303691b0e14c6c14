"""Which model a name's alias or version means, remembered per process.

A version's model never changes, so it is kept for good (bounded). An alias moves: each
move bumps its tenant's generation in Redis once the move has committed, and a
remembered alias counts only while its generation is still the current one, so every
API process sees a move on its next request, for the cost of one Redis GET instead of
a SQL read. If a bump is lost (Redis down at that moment), an entry still lives at most
`max_age_s`. With Redis unreachable every lookup reads SQL; with SQL unreachable a
remembered answer is served, as `KnownModels` serves a remembered model.
"""

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import redis
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.database_health import DatabaseHealth, is_unavailable
from app.db import session_scope
from app.errors import DatabaseUnavailable

logger = logging.getLogger(__name__)

MAX_ENTRIES = 4096
_KEY = "shardtrain:model-aliases:{tenant}:generation"


class AliasGenerations:
    """A counter per tenant, bumped after every committed alias move."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def bump(self, tenant_id: str) -> None:
        # The move has committed already: a Redis failure must not fail the request
        # that made it; the entries' age bound covers the lost bump.
        try:
            self._redis.incr(_KEY.format(tenant=tenant_id))
        except redis.RedisError as exc:
            logger.warning("alias generation of %s not bumped (Redis: %s)", tenant_id, exc)

    def current(self, tenant_id: str) -> int | None:
        """None when Redis does not answer: then nothing remembered is trusted."""
        try:
            value = self._redis.get(_KEY.format(tenant=tenant_id))
        except redis.RedisError:
            return None
        return int(value) if value is not None else 0


@dataclass(frozen=True)
class _Entry:
    model_id: str
    generation: int | None
    read_at: float


class NameResolver:
    def __init__(
        self, generations: AliasGenerations, max_age_s: float, size: int = MAX_ENTRIES
    ) -> None:
        self.generations = generations
        self._max_age_s = max_age_s
        self._size = size
        self._entries: OrderedDict[tuple[str, str, str], _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def resolve(
        self,
        sessions: sessionmaker[Session],
        health: DatabaseHealth,
        key: tuple[str, str, str],
        read: Callable[[Session], str],
        *,
        moves: bool,
    ) -> str:
        """The model id `read` finds for `key` (tenant, name, "alias:…" or "version:…");
        `read` raises the API's 404. `moves`: an alias, checked against the generation."""
        tenant_id = key[0]
        generation = self.generations.current(tenant_id) if moves else None
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and self._fresh(entry, generation, moves):
            return entry.model_id
        try:
            with session_scope(sessions) as session:
                model_id = read(session)
        except SQLAlchemyError as exc:
            if not is_unavailable(exc):
                raise
            health.failed(exc)
            if entry is None:
                raise DatabaseUnavailable() from None
            return entry.model_id
        with self._lock:
            self._entries[key] = _Entry(model_id, generation, time.monotonic())
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return model_id

    def _fresh(self, entry: _Entry, generation: int | None, moves: bool) -> bool:
        if not moves:
            return True
        if generation is None or entry.generation != generation:
            return False
        return time.monotonic() - entry.read_at <= self._max_age_s
