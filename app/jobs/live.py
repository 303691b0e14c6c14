"""A job's events as a server-sent event stream, until the job ends.

One `EventNotifier` per API process watches every followed job with a single query per
interval and wakes only the streams whose job changed. A stream reads SQL when woken,
never on a timer of its own: two hundred idle streams used to cost two queries and a
thread hop each, twice a second, which saturated the thread pool that predict needs.
"""

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import ScalarSelect, func, select
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from app.database_health import is_unavailable as is_database_unavailable
from app.jobs.repository import JobRepository
from app.jobs.schemas import EventOut
from app.tables import Job, JobEvent
from app.tables.statuses import JOB_TERMINAL
from app.tenancy.scope import SYSTEM

logger = logging.getLogger(__name__)

POLL_S = 0.5
BATCH = 500
# Job ids per watch query: keeps the statement and its bind list small however many
# jobs one process follows.
WATCH_CHUNK = 1000

# A job's status and newest event seq; None once the job is gone.
JobState = tuple[str, int | None] | None
StateReader = Callable[[sessionmaker[Session], list[str]], dict[str, JobState]]
# An object's events after a cursor, and its status (None once it is gone).
EventReader = Callable[[sessionmaker[Session], str, str | None], tuple[list[Any], str | None]]
_UNSEEN = object()


def outlasts_outage(exc: BaseException) -> bool:
    """Whether an error passes once the database is back: a stream that meets one waits
    for the notifier's next good poll instead of ending, or retrying on a timer of its own."""
    return is_database_unavailable(exc) or isinstance(exc, PoolTimeoutError)


def read_states(
    sessions: sessionmaker[Session],
    ids: list[str],
    table: Any,
    newest_event: ScalarSelect[Any],
) -> dict[str, JobState]:
    """Status and newest event seq of each row of `table` (jobs, sweeps), one query per
    WATCH_CHUNK ids; `newest_event` is the correlated max of its events' seq."""
    states: dict[str, JobState] = dict.fromkeys(ids)
    with sessions() as session:
        for start in range(0, len(ids), WATCH_CHUNK):
            chunk = ids[start : start + WATCH_CHUNK]
            statement = select(table.id, table.status, newest_event).where(table.id.in_(chunk))
            for row_id, status, seq in session.execute(statement).tuples():
                states[row_id] = (status, seq)
    return states


def read_job_states(sessions: sessionmaker[Session], job_ids: list[str]) -> dict[str, JobState]:
    newest = select(func.max(JobEvent.seq)).where(JobEvent.job_id == Job.id).scalar_subquery()
    return read_states(sessions, job_ids, Job, newest)


class EventNotifier:
    """Wakes the streams of a job when its status or newest event changes.

    The poller runs only while some stream follows a job, on the event loop of the
    streams, and is started by the first of them; `aclose` stops it with the app.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        interval_s: float = POLL_S,
        read_states: StateReader = read_job_states,
    ) -> None:
        self.sessions = sessions
        # The status and newest event of each followed object: jobs, or sweeps.
        self.read_states = read_states
        self.interval_s = interval_s
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._seen: dict[str, object] = {}
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @contextmanager
    def follow(self, job_id: str) -> Iterator[asyncio.Event]:
        """An event set after each change of the job seen from now on, and once after
        the first poll that sees it: a stream reads after subscribing, so a change
        committed between its read and that first poll is not lost."""
        wake = asyncio.Event()
        self._waiters.setdefault(job_id, set()).add(wake)
        self._ensure_polling()
        try:
            yield wake
        finally:
            waiters = self._waiters.get(job_id)
            if waiters is not None:
                waiters.discard(wake)
                if not waiters:
                    del self._waiters[job_id]
                    self._seen.pop(job_id, None)

    def recheck(self, job_id: str) -> None:
        """Wake the job's streams after the next good poll, changed or not: a stream
        whose read failed waits for that instead of hammering a database that is down."""
        self._seen.pop(job_id, None)

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            # wait(), not await: the poller's cancellation is not the caller's.
            await asyncio.wait({task})

    def _ensure_polling(self) -> None:
        loop = asyncio.get_running_loop()
        # A poller bound to another loop (a test client's earlier portal) is dead weight.
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            # A context of its own: the poller serves every stream, and must not log
            # under the request id of the one that happened to start it.
            self._task = loop.create_task(
                self._poll(), name="shardtrain-event-notifier", context=contextvars.Context()
            )

    async def _poll(self) -> None:
        # Ends when nothing is followed; the next stream starts it again. The check and
        # the end happen in one step of the loop, so no stream subscribes in between.
        while self._waiters:
            job_ids = list(self._waiters)
            try:
                # The loop's own executor, not the request thread pool: streams keep
                # waking while slow requests hold every request thread.
                states = await asyncio.to_thread(self.read_states, self.sessions, job_ids)
            except Exception as exc:
                # Any failure, not only the database's: a poller that died would leave
                # every stream of the process waiting for good.
                if not self._failing:
                    self._failing = True
                    logger.warning(
                        "event notifier: polling failed (%s); streams wait and it retries "
                        "every %.1f s",
                        type(exc).__name__,
                        self.interval_s,
                        # An outage is logged by the database's health watch already; a
                        # traceback is for what nobody else reports.
                        exc_info=not outlasts_outage(exc),
                    )
            else:
                if self._failing:
                    self._failing = False
                    logger.warning("event notifier: polling works again")
                self._wake(states)
            await asyncio.sleep(self.interval_s)

    def _wake(self, states: dict[str, JobState]) -> None:
        for job_id, state in states.items():
            waiters = self._waiters.get(job_id)
            # A job nobody follows any more keeps no state: its next follower is new.
            if waiters is None or self._seen.get(job_id, _UNSEEN) == state:
                continue
            self._seen[job_id] = state
            for wake in waiters:
                wake.set()


def _read(
    sessions: sessionmaker[Session], job_id: str, after: str | None
) -> tuple[list[EventOut], str | None]:
    with sessions() as session:
        repository = JobRepository(session, SYSTEM)
        job = repository.get(job_id)
        rows, _ = repository.events(job_id, limit=BATCH, after=after)
        return [EventOut.model_validate(e) for e in rows], job.status if job else None


async def stream_events(
    notifier: EventNotifier, job_id: str, after: str | None
) -> AsyncIterator[dict[str, Any]]:
    """Every event of the job after `after`, then new ones as they are written, until
    the job ends."""
    async for message in follow_events(notifier, job_id, after, _read, JOB_TERMINAL):
        yield message


async def follow_events(
    notifier: EventNotifier,
    object_id: str,
    after: str | None,
    read: EventReader,
    terminal: frozenset[str],
) -> AsyncIterator[dict[str, Any]]:
    """Every event after `after`, then new ones as they are written, until the object's
    status is in `terminal`. Each carries its id, so a client that reconnects can resume
    with `?after=` or `Last-Event-ID`."""
    with notifier.follow(object_id) as wake:
        failing = False
        while True:
            # Cleared before the read: a change the notifier sees during it wakes the
            # next wait at once instead of being lost.
            wake.clear()
            try:
                # Read the status before the events: a final event written after this
                # read is still sent on the next pass, never lost between the queries.
                events, status = await run_in_threadpool(read, notifier.sessions, object_id, after)
            except Exception as exc:
                if not outlasts_outage(exc):
                    raise
                if not failing:
                    logger.info("event stream of %s: the database is unreachable", object_id)
                failing = True
                notifier.recheck(object_id)
                await wake.wait()
                continue
            failing = False
            for event in events:
                yield {"id": event.id, "event": event.type, "data": event.model_dump_json()}
                after = event.id
            if len(events) == BATCH:
                continue
            if status is None or status in terminal:
                return
            await wake.wait()
