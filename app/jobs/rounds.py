"""Worker-side stages of a job: prepare and merge a round (the shard stage is in
`app.jobs.shard_stage`, finalize in `app.jobs.finalize`).

Each stage is an idempotent function of ids: it re-reads state, skips work already
done, and writes by key. Celery tasks in `workers/tasks.py` are thin wrappers.
"""

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy.orm import Session, object_session

from app.config import get_settings
from app.datasets.repository import DatasetRepository
from app.jobs.checkpoints import load_part, save_checkpoint
from app.jobs.events import record_event
from app.jobs.learners import policy_for
from app.jobs.lifecycle import fail, transition
from app.jobs.repository import JobRepository
from app.jobs.service import SpecError, check_spec

# The shard stage lives in its own module; these names stay importable from here.
from app.jobs.shard_stage import DeviceUnavailable as DeviceUnavailable
from app.jobs.shard_stage import choose_device as choose_device
from app.jobs.shard_stage import global_state
from app.jobs.shard_stage import train_shard as train_shard
from app.jobs.sharding import ShardingError, ShardPlan, build_shards
from app.jobs.spec import JobSpec
from app.paramstore import ParamStore
from app.storage import BlobStore
from app.tables import Job, JobRound
from app.tenancy.limits import limits_for
from app.training.protocol import (
    Evaluation,
    NoUsableResultsError,
    Progress,
    RoundAggregate,
    RoundPolicy,
)

logger = logging.getLogger(__name__)


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


# --- prepare -----------------------------------------------------------------------

PrepareStep = Literal["skip", "wait", "failed", "build"]


def begin_prepare(
    session: Session, job_id: str, *, max_wait_s: float | None = None, now: float | None = None
) -> PrepareStep:
    """Check the job's dataset and spec. A dataset still being ingested is waited for
    ("wait") for at most `max_wait_s` from the job's creation, then the job fails: an
    ingest that never ends must not leave its jobs queued forever."""
    job = JobRepository(session).get(job_id, for_update=True)
    if job is None or job.status not in ("queued", "preparing"):
        return "skip"
    dataset = DatasetRepository(session, job.tenant_id).get(job.dataset_id)
    if dataset is None or dataset.status == "failed":
        reason = dataset.error if dataset else "it was deleted"
        fail(job, "dataset_not_ready", f"dataset {job.dataset_id} is unusable: {reason}")
        return "failed"
    if dataset.status != "ready":
        waited = (time.time() if now is None else now) - (job.stage_started_at or job.created_at)
        if max_wait_s is not None and job.status == "queued" and waited > max_wait_s:
            fail(
                job,
                "dataset_not_ready",
                f"dataset {job.dataset_id} was still {dataset.status} after {waited:.0f} s "
                f"of waiting (the limit is {max_wait_s:.0f} s); its ingest did not finish",
            )
            return "failed"
        return "wait"
    spec = JobSpec.stored(job.spec)
    try:
        job.task = check_spec(spec, dataset.columns or [], dataset.rows or 0)
    except SpecError as exc:
        fail(job, "invalid_spec", f"{exc.param}: {exc.message}")
        return "failed"
    if job.status == "queued":
        transition(job, "preparing")
        # The watchdog's clock for this stage starts now, not when the job was queued:
        # time spent waiting for an ingest is not a stalled prepare.
        job.stage_started_at = time.time()
    return "build"


@dataclass(frozen=True)
class BuildInput:
    """What writing a job's shards needs, read in a short transaction so that none is
    open while the shards are written (minutes, for a large dataset)."""

    job_id: str
    data_key: str
    spec: JobSpec
    columns: list[dict[str, Any]]
    task: str
    max_parameters: int


def read_build_input(session: Session, job_id: str) -> BuildInput | None:
    job = JobRepository(session).get(job_id)
    if job is None or job.status != "preparing":
        return None
    dataset = DatasetRepository(session, job.tenant_id).get(job.dataset_id)
    assert dataset is not None and dataset.data_key is not None and job.task is not None
    return BuildInput(
        job_id=job.id,
        data_key=dataset.data_key,
        spec=JobSpec.stored(job.spec),
        columns=dataset.columns or [],
        task=job.task,
        max_parameters=limits_for(session, get_settings(), job.tenant_id).max_parameters,
    )


def write_shards(
    store: BlobStore, params: ParamStore, work: BuildInput
) -> ShardPlan | ShardingError:
    """The shards and round 0's parameters, written by key (a second run writes the same
    files); a ShardingError comes back, for `record_shards` to fail the job with."""
    try:
        plan = build_shards(
            store,
            job_id=work.job_id,
            data_key=work.data_key,
            spec=work.spec,
            columns=work.columns,
            task=work.task,
            max_parameters=work.max_parameters,
        )
    except ShardingError as exc:
        return exc
    state = policy_for(work.spec, work.task, plan).initial_state()
    save_checkpoint(store, work.job_id, 0, state)
    params.put_global(work.job_id, 0, state)
    return plan


def record_shards(session: Session, work: BuildInput, built: ShardPlan | ShardingError) -> NextStep:
    """Move the job to round 1, unless it changed meanwhile (a cancel) or sharding failed."""
    job = JobRepository(session).get(work.job_id, for_update=True)
    if job is None or job.status != "preparing":
        return NextStep("none")
    if isinstance(built, ShardingError):
        fail(job, built.code, str(built))
        return NextStep("none")
    job.plan = built.to_dict()
    job.current_round = 0
    transition(job, "running")
    return await_round(job, 1, built.shards, work.spec)


def build_job_shards(
    session: Session, store: BlobStore, params: ParamStore, job_id: str
) -> NextStep:
    """Read, write the shards, record, in one session: for in-process callers. The
    worker runs the three steps with a short session around each SQL step."""
    work = read_build_input(session, job_id)
    if work is None:
        return NextStep("none")
    return record_shards(session, work, write_shards(store, params, work))


# --- merge -------------------------------------------------------------------------


@dataclass(frozen=True)
class MergeInput:
    job_id: str
    round: int
    plan: ShardPlan
    spec: JobSpec
    policy: RoundPolicy
    # When the round was (last) sent: the round's wall time counts from here.
    stage_started_at: float | None


@dataclass(frozen=True)
class MergeOutcome:
    """A merged round, computed with no SQL open; `record_merge` writes it."""

    input: MergeInput
    failure: tuple[str, str] | None = None
    aggregate: RoundAggregate | None = None
    evaluation: Evaluation | None = None
    shards: list[dict[str, Any]] = field(default_factory=list)
    # Left out of the merge: `missing` sent no result, the rest sent one the policy refused.
    excluded: list[int] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    slowest_shard_seconds: float = 0.0
    started: float = 0.0


def read_merge_input(session: Session, job_id: str, round_: int) -> MergeInput | None:
    job = JobRepository(session).get(job_id)
    if not _merge_fence(job, round_):
        return None
    assert job is not None and job.plan is not None and job.task is not None
    plan, spec = ShardPlan.from_dict(job.plan), JobSpec.stored(job.spec)
    return MergeInput(
        job_id=job_id,
        round=round_,
        plan=plan,
        spec=spec,
        policy=policy_for(spec, job.task, plan),
        stage_started_at=job.stage_started_at,
    )


def _merge_fence(job: Job | None, round_: int) -> bool:
    # Only the merge of the next round moves the job, so a duplicate delivery can never
    # advance it twice. Checked when reading and again, under the row lock, when writing.
    return job is not None and job.status == "running" and job.current_round == round_ - 1


def compute_merge(work: MergeInput, store: BlobStore, params: ParamStore) -> MergeOutcome:
    """Load the round's shard results, let the policy aggregate them, store the global
    state and the checkpoint by key, and evaluate: a second run writes the same bytes."""
    started = time.perf_counter()
    policy, job_id, round_ = work.policy, work.job_id, work.round
    results = [params.get_shard(job_id, round_, s) for s in range(work.plan.shards)]
    present = [r for r in results if r is not None]
    missing = [s for s, r in enumerate(results) if r is None]
    previous = None
    if policy.aggregate_reads_previous:
        previous = global_state(store, params, job_id, round_ - 1)
        if previous is None:
            raise RuntimeError(f"no global state for round {round_ - 1} of job {job_id}")
    try:
        aggregate = policy.aggregate(round_, previous, present)
    except NoUsableResultsError:
        if not present:
            failure = ("worker_lost", f"round {round_}: every shard's result is missing")
        else:
            failure = ("diverged", f"round {round_}: no shard returned usable parameters")
        return MergeOutcome(work, failure=failure)
    params.put_global(job_id, round_, aggregate.state)
    save_checkpoint(store, job_id, round_, aggregate.state)
    val_features, val_targets = load_part(store, work.plan.validation_key)
    return MergeOutcome(
        work,
        aggregate=aggregate,
        evaluation=policy.evaluate(aggregate.state, val_features, val_targets),
        shards=[
            {
                "shard": r.shard,
                "examples": r.num_examples,
                "loss": r.loss,
                "seconds": round(r.seconds, 4),
            }
            for r in present
        ],
        excluded=sorted(missing + aggregate.excluded),
        missing=missing,
        slowest_shard_seconds=max((r.seconds for r in present), default=0.0),
        started=started,
    )


def record_merge(session: Session, merged: MergeOutcome) -> NextStep:
    """Record the round and move the job on, under the row lock, if no other merge or
    cancel got there first; the next step to send after the commit."""
    work = merged.input
    job_id, round_, spec = work.job_id, work.round, work.spec
    repository = JobRepository(session)
    job = repository.get(job_id, for_update=True)
    if not _merge_fence(job, round_):
        return NextStep("none")
    assert job is not None
    if merged.failure is not None:
        fail(job, *merged.failure)
        return NextStep("none")
    assert merged.aggregate is not None
    evaluation, train_loss = merged.evaluation, merged.aggregate.train_loss
    # From the round's dispatch to the end of its merge, queueing included. A re-sent
    # round restarts that clock, yet its shards may be the first copies' results: the
    # round took at least its slowest shard plus the merge.
    own = merged.slowest_shard_seconds + (time.perf_counter() - merged.started)
    since_dispatch = time.time() - work.stage_started_at if work.stage_started_at else 0.0
    repository.add_round(
        JobRound(
            job_id=job_id,
            round=round_,
            train_loss=train_loss,
            val_loss=evaluation.loss if evaluation else None,
            val_metrics=evaluation.metrics if evaluation else {},
            shards=merged.shards,
            excluded_shards=merged.excluded,
            seconds=max(since_dispatch, own),
            slowest_shard_seconds=merged.slowest_shard_seconds,
        )
    )
    for shard in merged.excluded:
        reason = "no result" if shard in merged.missing else "non-finite parameters or no examples"
        record_event(
            session,
            job_id,
            "shard.excluded",
            f"round {round_}: shard {shard} left out of the merge ({reason})",
            level="warning",
            round=round_,
            shard=shard,
        )
    job.current_round = round_
    job.metrics = {"round": round_, "train_loss": train_loss, "split": "validation"}
    if evaluation is not None:
        job.metrics.update({"val_loss": evaluation.loss, **evaluation.metrics})

    decision = work.policy.decide(round_, evaluation, Progress(job.best_round, job.best_val_loss))
    job.best_round, job.best_val_loss = decision.best_round, decision.best_val_loss
    record_event(
        session,
        job_id,
        "round.completed",
        f"round {round_} of {job.rounds} merged from {len(merged.aggregate.used)} shard(s)",
        round=round_,
        train_loss=train_loss,
        val_loss=evaluation.loss if evaluation else None,
    )
    if decision.finish:
        if decision.early_stopped:
            record_event(
                session,
                job_id,
                "job.early_stopped",
                f"no validation improvement for {round_ - decision.best_round} round(s); "
                f"keeping round {decision.best_round}",
                best_round=decision.best_round,
            )
        return await_finalize(job)
    return await_round(job, round_ + 1, work.plan.shards, spec)


def merge_round(
    session: Session, store: BlobStore, params: ParamStore, job_id: str, round_: int
) -> NextStep:
    """Read, merge, record in one session: for in-process callers. The worker runs the
    steps with a short session around each SQL step."""
    work = read_merge_input(session, job_id, round_)
    if work is None:
        return NextStep("none")
    return record_merge(session, compute_merge(work, store, params))


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
