"""A job's events as a server-sent event stream, until the job ends."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from app.jobs.lifecycle import TERMINAL
from app.jobs.repository import JobRepository
from app.jobs.schemas import EventOut

POLL_S = 0.5
BATCH = 500


def _poll(
    sessions: sessionmaker[Session], job_id: str, after: str | None
) -> tuple[list[EventOut], str | None]:
    with sessions() as session:
        repository = JobRepository(session)
        job = repository.get(job_id)
        rows, _ = repository.events(job_id, limit=BATCH, after=after)
        return [EventOut.model_validate(e) for e in rows], job.status if job else None


async def stream_events(
    sessions: sessionmaker[Session], job_id: str, after: str | None
) -> AsyncIterator[dict[str, Any]]:
    """Every event after `after`, then new ones as they are written. Each carries its id,
    so a client that reconnects can resume with `?after=`."""
    while True:
        # Read the status before the events: a final event written after this read is
        # still sent on the next pass, never lost between the two queries.
        events, status = await run_in_threadpool(_poll, sessions, job_id, after)
        for event in events:
            yield {"id": event.id, "event": event.type, "data": event.model_dump_json()}
            after = event.id
        if (status is None or status in TERMINAL) and len(events) < BATCH:
            return
        if len(events) < BATCH:
            await asyncio.sleep(POLL_S)
