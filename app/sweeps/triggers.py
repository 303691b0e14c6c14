"""The message that steps a sweep after one of its jobs moved (shards written, a round
merged, the model registered, a failure), sent once that change commits. A lost one
costs only time: the watchdog steps every unfinished sweep."""

from sqlalchemy.orm import Session

from app.dispatch import Dispatcher
from app.jobs.repository import JobRepository
from app.outbox import send_after_commit
from app.tenancy.scope import SYSTEM


def step_sweep_after_commit(session: Session, dispatcher: Dispatcher, job_id: str) -> None:
    sweep_id = JobRepository(session, SYSTEM).sweep_of(job_id)
    if sweep_id is not None:
        send_after_commit(session, dispatcher, "sweep_step", sweep_id=sweep_id)
