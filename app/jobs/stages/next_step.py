"""What a stage asks for once its transaction has committed: the next round, the
finalize, or nothing; and the job's note of which stage it now awaits, which the
watchdog reads."""

import time
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy.orm import object_session

from app.jobs.events import record_event
from app.jobs.spec import JobSpec
from app.tables import Job

Step = Literal["none", "round", "finalize"]


@dataclass(frozen=True)
class NextStep:
    """What the task sends once its transaction has committed."""

    next: Step
    round: int = 0
    shards: int = 0
    device: str = "auto"
    attempt: int = 0

    def message(self, job_id: str) -> tuple[str, dict[str, Any]] | None:
        """The dispatcher call this step asks for, as (`Dispatcher` method, arguments):
        what the worker records in the outbox and what an in-process driver runs."""
        if self.next == "round":
            return "round", {
                "job_id": job_id,
                "round_": self.round,
                "shards": self.shards,
                "device": self.device,
                "attempt": self.attempt,
            }
        if self.next == "finalize":
            return "finalize", {"job_id": job_id}
        return None


def await_round(job: Job, round_: int, shards: int, spec: JobSpec, attempt: int = 0) -> NextStep:
    """Note that the job now waits on round `round_` (the watchdog reads this)."""
    _await_stage(job, "round", attempt)
    session = object_session(job)
    if session is not None:
        verb = "sent" if attempt == 0 else f"re-sent (attempt {attempt + 1})"
        record_event(
            session,
            job.id,
            "round.started",
            f"round {round_} of {job.rounds} {verb} to {shards} shard(s)",
            level="info" if attempt == 0 else "warning",
            round=round_,
            attempt=attempt,
        )
    return NextStep(
        "round",
        round=round_,
        shards=shards,
        device=spec.distribution.device,
        attempt=attempt,
    )


def await_finalize(job: Job, attempt: int = 0) -> NextStep:
    _await_stage(job, "finalize", attempt)
    return NextStep("finalize", attempt=attempt)


def _await_stage(job: Job, stage: str, attempt: int) -> None:
    job.stage, job.stage_started_at, job.stage_attempts = stage, time.time(), attempt
    if attempt < (job.attempt_base or 0):
        # A new stage after a resumed one: its attempts count from 0 again.
        job.attempt_base = 0
