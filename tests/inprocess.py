"""Drive a job through its worker stages in this process, for tests that check the
stages' logic and outputs without a Celery worker (the e2e suite has one).

`InProcessDispatcher` has the methods of `app.dispatch.Dispatcher` that a job's stages
send, and runs each message as the worker's task would; `run_job` follows the messages
the stages ask for (`NextStep.message`), the same decisions the workers follow."""

from collections import deque
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.db import session_scope
from app.dispatch import Dispatcher
from app.jobs.repository import JobRepository
from app.jobs.stages import finalize, merge, next_step, prepare, train
from app.model_names.resolution import AliasGenerations
from app.paramstore import ParamStore
from app.storage import BlobStore
from app.sweeps.step import step_sweep
from app.sweeps.triggers import step_sweep_after_commit
from app.tenancy.scope import SYSTEM


class InProcessDispatcher:
    def __init__(
        self, sessions: sessionmaker[Session], store: BlobStore, params: ParamStore
    ) -> None:
        self._sessions, self._store, self._params = sessions, store, params
        self.sent: deque[tuple[str, dict[str, Any]]] = deque()
        self.log: list[str] = []

    def send(self, kind: str, args: dict[str, Any]) -> None:
        self.log.append(kind)
        getattr(self, kind)(**args)

    def _follow(self, job_id: str, step: next_step.NextStep) -> None:
        message = step.message(job_id)
        if message is not None:
            self.sent.append(message)

    def prepare(self, job_id: str) -> None:
        with session_scope(self._sessions) as session:
            begun = prepare.begin_prepare(session, job_id)
        # A job cancelled while queued (a sweep's trial) is not prepared.
        assert begun != "wait", f"job {job_id} waits for its dataset"
        if begun != "build":
            return
        with session_scope(self._sessions) as session:
            step = prepare.build_job_shards(session, self._store, self._params, job_id)
        self._follow(job_id, step)

    def round(
        self, job_id: str, round_: int, shards: int, device: str = "auto", attempt: int = 0
    ) -> None:
        for shard in range(shards):
            with session_scope(self._sessions) as session:
                train.train_shard(session, self._store, self._params, job_id, round_, shard)
        with session_scope(self._sessions) as session:
            step = merge.merge_round(session, self._store, self._params, job_id, round_)
        self._follow(job_id, step)

    def finalize(self, job_id: str) -> None:
        # The worker's own steps, and its Redis for the alias generations.
        finalize.finalize_in_steps(
            lambda: session_scope(self._sessions),
            self._store,
            job_id,
            AliasGenerations(self._params.redis),
        )


def run_job(
    sessions: sessionmaker[Session],
    store: BlobStore,
    params: ParamStore,
    job_id: str,
    *,
    stop_before: str | None = None,
    stop_before_round: int | None = None,
    first: tuple[str, dict[str, Any]] | None = None,
) -> list[str]:
    """Run the job's messages, from `first` (default: its prepare), until none is left,
    or until the first of kind `stop_before` or the round `stop_before_round`, which is
    left unsent; the kinds sent, in order."""
    dispatcher = InProcessDispatcher(sessions, store, params)
    dispatcher.sent.append(first or ("prepare", {"job_id": job_id}))

    def stop(kind: str, args: dict[str, Any]) -> bool:
        return kind == stop_before or (kind == "round" and args["round_"] == stop_before_round)

    while dispatcher.sent and not stop(*dispatcher.sent[0]):
        dispatcher.send(*dispatcher.sent.popleft())
    return dispatcher.log


def continue_job(
    sessions: sessionmaker[Session], store: BlobStore, params: ParamStore, job_id: str
) -> None:
    """Run, in process, what a resume sent (the job's stage, at its attempt), then the rest."""
    with sessions() as session:
        job = JobRepository(session, SYSTEM).get(job_id)
        assert job is not None and job.plan is not None
        if job.stage == "finalize":
            first: tuple[str, dict[str, Any]] = ("finalize", {"job_id": job_id})
        else:
            first = (
                "round",
                {
                    "job_id": job_id,
                    "round_": job.current_round + 1,
                    "shards": len(job.plan["shard_keys"]),
                    "attempt": job.stage_attempts,
                },
            )
    run_job(sessions, store, params, job_id, first=first)


class RecordingDispatcher:
    """What `send_after_commit` needs of a dispatcher; the committed messages queue
    here, in order, for `run_sweep` to run."""

    def __init__(self) -> None:
        self.sent: deque[tuple[str, dict[str, Any]]] = deque()

    def check_kind(self, kind: str) -> None:
        Dispatcher.check_kind(self, kind)  # type: ignore[arg-type]

    def send(self, kind: str, args: dict[str, Any]) -> None:
        self.sent.append((kind, args))


def run_sweep(
    sessions: sessionmaker[Session],
    store: BlobStore,
    params: ParamStore,
    sweep_id: str,
    *,
    after_each: Callable[[str, dict[str, Any]], None] | None = None,
    pending: list[tuple[str, dict[str, Any]]] | None = None,
) -> list[str]:
    """Run a sweep's steps and its jobs' stages, first in first out (the trials'
    stages interleave as on parallel workers), each job stage followed by the step the
    worker sends; the kinds run, in order. `after_each` sees each message once run;
    `pending` are messages sent before, run after the first step."""
    outbox = RecordingDispatcher()
    jobs = InProcessDispatcher(sessions, store, params)
    outbox.sent.extend([("sweep_step", {"sweep_id": sweep_id}), *(pending or [])])
    ran: list[str] = []
    while outbox.sent:
        kind, args = outbox.sent.popleft()
        ran.append(kind)
        if kind == "sweep_step":
            with session_scope(sessions) as session:
                step_sweep(session, outbox, args["sweep_id"])  # type: ignore[arg-type]
        elif kind != "revoke_round":
            jobs.send(kind, args)
            outbox.sent.extend(jobs.sent)
            jobs.sent.clear()
            with session_scope(sessions) as session:
                step_sweep_after_commit(session, outbox, args["job_id"])  # type: ignore[arg-type]
        if after_each is not None:
            after_each(kind, args)
    return ran
