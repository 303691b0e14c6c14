"""A sweep's events as a server-sent event stream, through the same notifier machinery
as a job's (`app.jobs.live`): one poll per interval for every followed sweep."""

from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.jobs.live import BATCH, EventNotifier, JobState, follow_events, read_states
from app.sweeps.repository import SweepRepository
from app.sweeps.schemas import SweepEventOut
from app.tables import Sweep, SweepEvent
from app.tables.statuses import SWEEP_TERMINAL
from app.tenancy.scope import SYSTEM


def read_sweep_states(sessions: sessionmaker[Session], sweep_ids: list[str]) -> dict[str, JobState]:
    newest = (
        select(func.max(SweepEvent.seq)).where(SweepEvent.sweep_id == Sweep.id).scalar_subquery()
    )
    return read_states(sessions, sweep_ids, Sweep, newest)


def _read(
    sessions: sessionmaker[Session], sweep_id: str, after: str | None
) -> tuple[list[SweepEventOut], str | None]:
    with sessions() as session:
        repository = SweepRepository(session, SYSTEM)
        sweep = repository.get(sweep_id)
        rows, _ = repository.events(sweep_id, limit=BATCH, after=after)
        return [SweepEventOut.model_validate(e) for e in rows], sweep.status if sweep else None


def sweep_notifier(sessions: sessionmaker[Session]) -> EventNotifier:
    return EventNotifier(sessions, read_states=read_sweep_states)


async def stream_sweep_events(
    notifier: EventNotifier, sweep_id: str, after: str | None
) -> AsyncIterator[dict[str, Any]]:
    async for message in follow_events(notifier, sweep_id, after, _read, SWEEP_TERMINAL):
        yield message
