"""The merge stage of a round: load the shard results, let the job's round policy
aggregate, evaluate and decide, persist the global state and the round, and send the
next round or the finalize. Idempotent: it re-reads state, is fenced on the job's
round, and writes by key."""

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from app.jobs.checkpoints import global_state, save_checkpoint
from app.jobs.events import record_event
from app.jobs.learners import policy_for
from app.jobs.lifecycle import fail
from app.jobs.part_files import load_part
from app.jobs.plan import ShardPlan
from app.jobs.repository import JobRepository
from app.jobs.spec import JobSpec
from app.jobs.stages.next_step import NextStep, await_finalize, await_round
from app.paramstore import ParamStore
from app.storage import BlobStore
from app.tables import Job, JobRound
from app.tables.statuses import JobStatus
from app.tenancy.scope import SYSTEM
from app.training.protocol import (
    Evaluation,
    NoUsableResultsError,
    Progress,
    RoundAggregate,
    RoundPolicy,
)
from app.training.trees.policy import IncompleteRoundError

logger = logging.getLogger(__name__)


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
    job = JobRepository(session, SYSTEM).get(job_id)
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
    return job is not None and job.status == JobStatus.RUNNING and job.current_round == round_ - 1


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
    except IncompleteRoundError as exc:
        return MergeOutcome(work, failure=("worker_lost", str(exc)))
    except NoUsableResultsError:
        if not present:
            failure = ("worker_lost", f"round {round_}: every shard's result is missing")
        else:
            failure = ("diverged", f"round {round_}: no shard returned usable parameters")
        return MergeOutcome(work, failure=failure)
    params.put_global(job_id, round_, aggregate.state)
    save_checkpoint(store, job_id, round_, aggregate.state)
    validation = load_part(store, work.plan.validation_key)
    return MergeOutcome(
        work,
        aggregate=aggregate,
        evaluation=policy.evaluate(aggregate.state, validation.features, validation.targets),
        shards=[
            {
                "shard": r.shard,
                "examples": r.num_examples,
                "loss": r.loss,
                "seconds": round(r.seconds, 4),
                "worker": r.worker,
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
    repository = JobRepository(session, SYSTEM)
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
        # Which worker trained each shard: on many hosts, where a round's time went.
        workers={str(shard["shard"]): shard["worker"] for shard in merged.shards},
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
