"""The training stage of one shard in one round: read what the shard needs, train it
through the job's round policy with no SQL session open, store the result by key,
and stop early when the result is no longer wanted."""

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from sqlalchemy.orm import Session

from app.jobs.checkpoints import global_state
from app.jobs.learners import policy_for
from app.jobs.part_files import load_part
from app.jobs.plan import ShardPlan
from app.jobs.repository import JobRepository
from app.jobs.spec import JobSpec
from app.paramstore import ParamStore
from app.storage import BlobStore
from app.tables import Job
from app.tables.statuses import JOB_TERMINAL, JobStatus
from app.tenancy.scope import SYSTEM
from app.training.loop import TrainingStopped
from app.training.protocol import RoundPolicy

logger = logging.getLogger(__name__)


class DeviceUnavailable(RuntimeError):
    pass


def choose_device(requested: str) -> torch.device:
    # Called inside the worker process that trains, never in a parent that forks.
    if requested == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if requested == "cuda":
        raise DeviceUnavailable("the job asks for device 'cuda' but this worker has no GPU")
    return torch.device("cpu")


@dataclass(frozen=True)
class ShardWork:
    """What one shard task needs, read in a short transaction: nothing in SQL stays
    open while it trains, so a database restart mid-shard costs the shard nothing."""

    job_id: str
    round: int
    shard: int
    shard_key: str
    policy: RoundPolicy
    device: str


def read_shard_work(
    session: Session, params: ParamStore, job_id: str, round_: int, shard: int
) -> ShardWork | None:
    """None when there is nothing to train: the job ended, the round was merged, or a
    copy of this task already stored the result."""
    job = JobRepository(session, SYSTEM).get(job_id)
    if not round_still_open(job, round_):
        return None
    if params.has_shard(job_id, round_, shard):
        return None  # a redelivered message: the result is already stored by key
    assert job is not None and job.plan is not None and job.task is not None
    spec, plan = JobSpec.stored(job.spec), ShardPlan.from_dict(job.plan)
    return ShardWork(
        job_id=job_id,
        round=round_,
        shard=shard,
        shard_key=plan.shard_keys[shard],
        policy=policy_for(spec, job.task, plan),
        device=spec.distribution.device,
    )


def round_still_open(job: Job | None, round_: int) -> bool:
    """A shard of `round_` is still wanted: the job runs and has not merged the round."""
    return job is not None and job.status == JobStatus.RUNNING and job.current_round < round_


def shard_still_wanted(session: Session, params: ParamStore, work: ShardWork) -> bool:
    """No when the job failed or was cancelled, the round was merged (a superseded copy),
    or another copy of the task already stored this shard's result."""
    job = JobRepository(session, SYSTEM).get(work.job_id)
    return round_still_open(job, work.round) and not params.has_shard(
        work.job_id, work.round, work.shard
    )


class ShardWatch:
    """Asks `ask` whether a shard's result is still wanted: at most every `every_s`
    during training (the loop's checkpoints come far more often) and always just before
    the write. An error that `is_outage` accepts counts as a yes: during an outage the
    copy trains on, as it would have with no check at all."""

    def __init__(
        self,
        ask: Callable[[], bool],
        *,
        is_outage: Callable[[BaseException], bool],
        every_s: float = 2.0,
    ) -> None:
        self._ask, self._is_outage, self._every_s = ask, is_outage, every_s
        self._next = time.monotonic() + every_s

    def during_training(self) -> bool:
        if time.monotonic() < self._next:
            return True
        self._next = time.monotonic() + self._every_s
        return self.before_write()

    def before_write(self) -> bool:
        try:
            return self._ask()
        except Exception as exc:
            if not self._is_outage(exc):
                raise
            logger.warning("could not check whether the shard is still wanted: %s", exc)
            return True


def run_shard(
    work: ShardWork,
    store: BlobStore,
    params: ParamStore,
    watch: ShardWatch | None = None,
    *,
    worker: str = "",
) -> bool:
    """Train and store the shard's result; no SQL. `watch` is asked at the training
    loop's checkpoints and before the write: a copy that is no longer wanted (the job
    failed or was cancelled, the round was merged, another copy stored the result)
    stops and writes nothing. True when this call stored the result."""
    start = global_state(store, params, work.job_id, work.round - 1)
    if start is None:
        raise RuntimeError(f"no parameters for round {work.round - 1} of job {work.job_id}")
    started = time.perf_counter()
    part = load_part(store, work.shard_key)
    try:
        result = work.policy.train_shard(
            work.round,
            work.shard,
            start,
            part.features,
            part.targets,
            device=choose_device(work.device),
            should_stop=None if watch is None else lambda: not watch.during_training(),
            rows=part.rows,
        )
    except TrainingStopped:
        logger.info("shard %s of round %s is no longer wanted; stopped", work.shard, work.round)
        return False
    if watch is not None and not watch.before_write():
        logger.info("shard %s of round %s is no longer wanted; not stored", work.shard, work.round)
        return False
    params.put_shard(
        work.job_id,
        work.round,
        dataclasses.replace(result, seconds=time.perf_counter() - started, worker=worker),
    )
    return True


def withdraw_late_result(params: ParamStore, job: Job | None, job_id: str, round_: int) -> None:
    """Called after a shard's write: if the job moved on between the last check and the
    write, remove what the write re-created, as the merge or finalize that moved it
    already removed its own keys (a late key would live for the whole TTL)."""
    if job is None or job.status in JOB_TERMINAL:
        params.delete_job(job_id)
    elif job.current_round > round_:
        # Round round_ + 1 is merged too: nothing reads round round_ again.
        params.delete_round(job_id, round_)


def train_shard(
    session: Session, store: BlobStore, params: ParamStore, job_id: str, round_: int, shard: int
) -> None:
    """Read and train with one session, for in-process callers; the worker reads in a
    short session and trains with none open."""
    work = read_shard_work(session, params, job_id, round_, shard)
    if work is not None:
        run_shard(work, store, params)
