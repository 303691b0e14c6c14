"""Engine and sessions. `session_scope` is the one place that commits."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from app.config import get_settings


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
