"""Worker-side stages of a job: prepare, train a shard, merge a round, finalize.

Each stage is an idempotent function of ids: it re-reads state, skips work already
done, and writes by key. Celery tasks in `workers/tasks.py` are thin wrappers.
"""

import logging
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from sqlalchemy.orm import Session, object_session

from app.config import get_settings
from app.datasets.repository import DatasetRepository
from app.jobs.checkpoints import load_checkpoint, load_part, save_checkpoint
from app.jobs.events import record_event
from app.jobs.lifecycle import fail, transition
from app.jobs.repository import JobRepository
from app.jobs.service import SpecError, check_spec
from app.jobs.sharding import ShardingError, build_shards
from app.jobs.spec import JobSpec
from app.merge import NoUsableResultsError, merge_results
from app.models import Job, JobRound
from app.paramstore import ParamStore, ShardResult
from app.storage import BlobStore
from app.tenancy.limits import limits_for
from app.training.loop import StateDict, TrainConfig, evaluate, train_local
from app.training.networks import NetworkConfig, initial_state

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


def shard_seed(seed: int, round_: int, shard: int) -> int:
    return int(np.random.SeedSequence([seed, round_, shard]).generate_state(1)[0])


Step = Literal["none", "round", "finalize"]


@dataclass(frozen=True)
class NextStep:
    """What the task sends once its transaction has committed."""

    next: Step
    round: int = 0
    shards: int = 0
    device: str = "auto"
    attempt: int = 0


# --- prepare -----------------------------------------------------------------------

PrepareStep = Literal["skip", "wait", "failed", "build"]


def begin_prepare(session: Session, job_id: str) -> PrepareStep:
    job = JobRepository(session).get(job_id, for_update=True)
    if job is None or job.status not in ("queued", "preparing"):
        return "skip"
    dataset = DatasetRepository(session, job.tenant_id).get(job.dataset_id)
    if dataset is None or dataset.status == "failed":
        reason = dataset.error if dataset else "it was deleted"
        fail(job, "dataset_not_ready", f"dataset {job.dataset_id} is unusable: {reason}")
        return "failed"
    if dataset.status != "ready":
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


def build_job_shards(
    session: Session, store: BlobStore, params: ParamStore, job_id: str
) -> NextStep:
    """Write the shards and round 0's parameters; the next step is round 1, or none."""
    job = JobRepository(session).get(job_id, for_update=True)
    if job is None or job.status != "preparing":
        return NextStep("none")
    dataset = DatasetRepository(session, job.tenant_id).get(job.dataset_id)
    assert dataset is not None and dataset.data_key is not None and job.task is not None
    spec = JobSpec.stored(job.spec)
    try:
        plan = build_shards(
            store,
            job_id=job.id,
            data_key=dataset.data_key,
            spec=spec,
            columns=dataset.columns or [],
            task=job.task,
            max_parameters=limits_for(session, get_settings(), job.tenant_id).max_parameters,
        )
    except ShardingError as exc:
        fail(job, exc.code, str(exc))
        return NextStep("none")
    state = initial_state(plan.network, spec.training.seed)
    save_checkpoint(store, job.id, 0, state)
    params.put_global(job.id, 0, state)
    job.plan = plan.to_dict()
    job.current_round = 0
    transition(job, "running")
    return await_round(job, 1, len(plan.shard_keys), spec)


# --- train -------------------------------------------------------------------------


def global_state(
    store: BlobStore, params: ParamStore, job_id: str, round_: int
) -> StateDict | None:
    """The merged parameters of a round: Redis first, the blob checkpoint if Redis lost them."""
    state = params.get_global(job_id, round_)
    if state is None:
        state = load_checkpoint(store, job_id, round_)
        if state is not None:
            params.put_global(job_id, round_, state)
    return state


def train_shard(
    session: Session, store: BlobStore, params: ParamStore, job_id: str, round_: int, shard: int
) -> None:
    job = JobRepository(session).get(job_id)
    if job is None or job.status != "running" or job.current_round >= round_:
        return  # cancelled, failed, or this round was already merged
    if params.get_shard(job_id, round_, shard) is not None:
        return  # a redelivered message: the result is already stored by key
    assert job.plan is not None and job.task is not None
    spec = JobSpec.stored(job.spec)
    start = global_state(store, params, job_id, round_ - 1)
    if start is None:
        raise RuntimeError(f"no parameters for round {round_ - 1} of job {job_id}")
    started = time.perf_counter()
    features, targets = load_part(store, job.plan["shard_keys"][shard])
    result = train_local(
        NetworkConfig.from_dict(job.plan["network"]),
        start,
        features,
        targets,
        TrainConfig(
            task=job.task,
            optimizer=spec.training.optimizer,
            learning_rate=spec.training.learning_rate,
            batch_size=spec.training.batch_size,
            local_epochs=spec.training.local_epochs,
            l1=spec.training.l1,
            l2=spec.training.l2,
        ),
        seed=shard_seed(spec.training.seed, round_, shard),
        device=choose_device(spec.distribution.device),
    )
    params.put_shard(
        job_id,
        round_,
        ShardResult(
            shard=shard,
            state=result.state,
            num_examples=result.num_examples,
            loss=result.loss,
            seconds=time.perf_counter() - started,
        ),
    )


# --- merge -------------------------------------------------------------------------


def merge_round(
    session: Session, store: BlobStore, params: ParamStore, job_id: str, round_: int
) -> NextStep:
    started = time.perf_counter()
    repository = JobRepository(session)
    job = repository.get(job_id, for_update=True)
    # The fence: only the merge of the next round moves the job, so a duplicate
    # delivery can never advance it twice.
    if job is None or job.status != "running" or job.current_round != round_ - 1:
        return NextStep("none")
    assert job.plan is not None and job.task is not None
    spec = JobSpec.stored(job.spec)
    n_shards = len(job.plan["shard_keys"])
    results = [params.get_shard(job_id, round_, s) for s in range(n_shards)]
    present = [r for r in results if r is not None]
    missing = [s for s, r in enumerate(results) if r is None]
    try:
        outcome = merge_results(
            spec.distribution.aggregation,
            [(r.state, r.num_examples) for r in present],
            trim_fraction=spec.distribution.trim_fraction,
        )
    except NoUsableResultsError:
        if not present:
            fail(job, "worker_lost", f"round {round_}: every shard's result is missing")
        else:
            fail(job, "diverged", f"round {round_}: no shard returned usable parameters")
        return NextStep("none")
    excluded = sorted(missing + [present[i].shard for i in outcome.excluded])
    params.put_global(job_id, round_, outcome.state)
    save_checkpoint(store, job_id, round_, outcome.state)

    used = [present[i] for i in outcome.used]
    examples = sum(r.num_examples for r in used)
    train_loss = sum(r.loss * r.num_examples for r in used) / examples if examples else None
    network = NetworkConfig.from_dict(job.plan["network"])
    target = job.plan["preprocessor"]["target"]
    val_features, val_targets = load_part(store, job.plan["validation_key"])
    evaluation = evaluate(
        network,
        outcome.state,
        val_features,
        val_targets,
        job.task,
        target_scale=(target["mean"], target["std"]),
    )
    repository.add_round(
        JobRound(
            job_id=job_id,
            round=round_,
            train_loss=train_loss,
            val_loss=evaluation.loss if evaluation else None,
            val_metrics=evaluation.metrics if evaluation else {},
            shards=[
                {
                    "shard": r.shard,
                    "examples": r.num_examples,
                    "loss": r.loss,
                    "seconds": round(r.seconds, 4),
                }
                for r in present
            ],
            excluded_shards=excluded,
            # From the round's dispatch to the end of its merge, queueing included.
            seconds=(time.time() - job.stage_started_at)
            if job.stage_started_at
            else time.perf_counter() - started,
            slowest_shard_seconds=max((r.seconds for r in present), default=0.0),
        )
    )
    for shard in excluded:
        reason = "no result" if shard in missing else "non-finite parameters or no examples"
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

    stop_early = False
    if evaluation is None:
        job.best_round = round_
    elif job.best_val_loss is None or evaluation.loss < job.best_val_loss - _min_delta(spec):
        job.best_round, job.best_val_loss = round_, evaluation.loss
    elif spec.training.early_stopping is not None:
        stop_early = round_ - (job.best_round or 0) >= spec.training.early_stopping.patience
    record_event(
        session,
        job_id,
        "round.completed",
        f"round {round_} of {job.rounds} merged from {len(outcome.used)} shard(s)",
        round=round_,
        train_loss=train_loss,
        val_loss=evaluation.loss if evaluation else None,
    )
    if stop_early or round_ >= job.rounds:
        if stop_early:
            record_event(
                session,
                job_id,
                "job.early_stopped",
                f"no validation improvement for {round_ - (job.best_round or 0)} round(s); "
                f"keeping round {job.best_round}",
                best_round=job.best_round,
            )
        return await_finalize(job)
    return await_round(job, round_ + 1, n_shards, spec)


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


def _min_delta(spec: JobSpec) -> float:
    return spec.training.early_stopping.min_delta if spec.training.early_stopping else 0.0
