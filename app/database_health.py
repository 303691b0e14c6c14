"""Whether the database answers, as one API process sees it.

During an outage every request that needs SQL fails the same way; logging each one (with
its traceback) filled 38 MB of log in 20 s and said nothing new after the first. This
module keeps one state per engine: the first failure logs that the database is down, the
first success afterwards logs how long it was down, and the requests in between answer
503 `database_unavailable` without a line of their own.

It also rides out a blip: while the database is believed up, a new connection that is
refused (PostgreSQL restarting, a fail-over) is tried again for `CONNECT_RETRY_S` before
the request fails. Retrying a connect is always safe: no statement has been sent yet.
Once an outage is known, requests fail at the first refusal instead of each waiting.
"""

import logging
import threading
import time
import weakref
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from app.db import is_transient_database_error

logger = logging.getLogger(__name__)

# What a client is told to wait before retrying (the Retry-After header).
RETRY_AFTER_S = 5
# Long enough for a PostgreSQL restart or fail-over, short enough that a request stuck
# behind it still answers well inside a client's timeout.
CONNECT_RETRY_S = 2.0
_CONNECT_PAUSE_S = 0.1
# psycopg waits for the operating system's TCP timeout (minutes) on a host that drops
# packets; a request should fail over to its 503 long before that.
CONNECT_TIMEOUT_S = 5


# Transient, but the transaction's (a serialization failure, a deadlock), not the
# server's: the database is up, and no outage is logged for them.
_CONFLICT_SQLSTATES = frozenset({"40001", "40P01"})


def is_unavailable(exc: BaseException) -> bool:
    """A failure to reach the database, not of the statement or the transaction:
    connection refused, the server restarting (AdminShutdown), a connection dropped
    mid-query, too many connections; on SQLite a locked file. The classification is
    app.db's (the workers retry the same errors), less transaction conflicts and the
    pool's own timeout, which happen with the database up."""
    if isinstance(exc, PoolTimeoutError) or not is_transient_database_error(exc):
        return False
    cause = exc.orig if isinstance(exc, DBAPIError) else exc
    return getattr(cause, "sqlstate", None) not in _CONFLICT_SQLSTATES


class DatabaseHealth:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._failures = 0

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            self._failures += 1
            if self._down_since is not None:
                return
            self._down_since = time.monotonic()
        # The cause's own first line (connection refused, terminating connection due to
        # administrator command, ...), without a traceback: the cause is not in our code.
        cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        logger.error(
            "database unreachable (%s: %s); answering 503 database_unavailable until it is back",
            type(getattr(exc, "orig", None) or exc).__name__,
            cause[0] if cause else "no message",
        )

    def recovered(self) -> None:
        if self._down_since is None:  # the common case, without taking the lock
            return
        with self._lock:
            if self._down_since is None:
                return
            seconds = time.monotonic() - self._down_since
            failures = self._failures
            self._down_since = None
            self._failures = 0
        logger.warning(
            "database reachable again after %.1f s (%d failed attempts meanwhile)",
            seconds,
            failures,
        )


_HEALTH: "weakref.WeakKeyDictionary[Engine, DatabaseHealth]" = weakref.WeakKeyDictionary()
_HEALTH_LOCK = threading.Lock()


def watch(engine: Engine) -> DatabaseHealth:
    """The engine's health, shared by every app built on the same engine (the engine is
    cached per URL), with the connect retry installed once."""
    with _HEALTH_LOCK:
        health = _HEALTH.get(engine)
        if health is not None:
            return health
        health = _HEALTH[engine] = DatabaseHealth()
    if engine.dialect.name == "postgresql":
        _install_connect_retry(engine, health)
    return health


def _install_connect_retry(engine: Engine, health: DatabaseHealth) -> None:
    def connect(dialect: Any, _record: Any, cargs: list[Any], cparams: dict[str, Any]) -> Any:
        cparams.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
        deadline = time.monotonic() + (0.0 if health.down else CONNECT_RETRY_S)
        while True:
            try:
                connection = dialect.connect(*cargs, **cparams)
            except dialect.loaded_dbapi.OperationalError as exc:
                if time.monotonic() < deadline:
                    time.sleep(_CONNECT_PAUSE_S)
                    continue
                health.failed(exc)
                raise
            health.recovered()
            return connection

    event.listen(engine, "do_connect", connect)
