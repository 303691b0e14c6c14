"""Engine and sessions. `session_scope` is the one place that commits."""

import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, TypeVar

import psycopg
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.orm import Session, sessionmaker

from app.config import get_settings

logger = logging.getLogger(__name__)


def make_engine(database_url: str) -> Engine:
    if database_url.startswith("sqlite"):
        engine = create_engine(
            database_url, connect_args={"check_same_thread": False, "timeout": 30}
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets the API read while a worker writes; foreign keys are off by default.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(database_url, pool_pre_ping=True)


@lru_cache
def _session_factory(database_url: str) -> sessionmaker[Session]:
    return sessionmaker(make_engine(database_url), expire_on_commit=False)


def session_factory(database_url: str | None = None) -> sessionmaker[Session]:
    return _session_factory(database_url or get_settings().database_url)


_OUTBOX = "after_commit"


def enqueue_after_commit(session: Session, send: Callable[[], None]) -> None:
    """Queue a message to send once the transaction that justifies it has committed.

    Sent earlier, a fast worker could look for a row that does not exist yet.
    """
    session.info.setdefault(_OUTBOX, []).append(send)


@contextmanager
def session_scope(factory: sessionmaker[Session] | None = None) -> Iterator[Session]:
    """Commit once on success, roll back on any error: no half-written rows."""
    session = (factory or session_factory())()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        outbox = session.info.pop(_OUTBOX, [])
        session.close()
    for send in outbox:
        send()


# SQLSTATEs that say "the server, not the statement": connection exceptions (class 08),
# a shutdown or a server still starting (57P01-57P03), too many connections, and the
# conflicts PostgreSQL asks the client to retry (serialization failure, deadlock).
_TRANSIENT_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300", "40001", "40P01"})


def is_transient_database_error(exc: BaseException) -> bool:
    """True when running the same work again, a little later, may well succeed: the
    database restarted, refused a connection, dropped one, or asked for a retry.
    A bad statement or a constraint violation is never transient."""
    if isinstance(exc, SQLAlchemyTimeoutError):
        return True  # the pool had no connection to give within its timeout
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig if exc.orig is not None else exc
    if isinstance(exc, psycopg.OperationalError):
        sqlstate = exc.sqlstate
        # No SQLSTATE at all: the connection was refused or closed before a server answered.
        return sqlstate is None or sqlstate.startswith("08") or sqlstate in _TRANSIENT_SQLSTATES
    if isinstance(exc, psycopg.InterfaceError):
        return "closed" in str(exc)  # "the connection is closed": a dropped session
    if isinstance(exc, sqlite3.OperationalError):
        return "database is locked" in str(exc)
    return False


class OutageTooLong(RuntimeError):
    """The database stayed unreachable for longer than the caller's grace."""


T = TypeVar("T")


def retry_transient(
    what: str,
    run: Callable[[], T],
    *,
    grace_s: float | None = None,
    grace_for: Callable[[BaseException], float | None] | None = None,
) -> T:
    """Run `run` again, with backoff, while it fails with a transient error: a
    database restart should delay the work, not fail it. `run` must be safe to run
    again after a failed attempt (a rolled-back transaction is).

    `grace_for(exc)` says how long to keep trying after the first failure for an
    error of that kind (None: not transient, raised at once); by default only
    transient database errors are retried, for `grace_s` (default
    `DATABASE_OUTAGE_GRACE_S`). Past the grace, `OutageTooLong` is raised from the
    last error."""
    if grace_for is None:
        limit = get_settings().database_outage_grace_s if grace_s is None else grace_s

        def grace_for(exc: BaseException) -> float | None:
            return limit if is_transient_database_error(exc) else None

    first_failure: float | None = None
    delay = 0.25
    while True:
        try:
            return run()
        except Exception as exc:
            grace = grace_for(exc)
            if grace is None:
                raise
            now = time.monotonic()
            # The grace counts from the first failure, not from the start of the work:
            # a blip at the end of a long stage gets as long as one at its start.
            first_failure = now if first_failure is None else first_failure
            if now + delay > first_failure + grace:
                raise OutageTooLong(f"{what}: still failing after {grace:.0f} s: {exc}") from exc
            logger.warning(
                "%s unreachable during %s (%s); again in %.1f s",
                _service(exc),
                what,
                _first_line(exc),
                delay,
            )
            time.sleep(delay)
            delay = min(delay * 2, 4.0)


def _service(exc: BaseException) -> str:
    # "Redis unreachable during …" or "Database unreachable during …", for the logs.
    if is_transient_database_error(exc):
        return "Database"
    return type(exc).__module__.split(".")[0].capitalize()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
