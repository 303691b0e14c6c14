"""How a trial stands, read from its jobs (one, or one per fold): still running, done
with a score, or ended without one. Pure: the step reads the rows, this decides."""

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.tables import Job, JobRound
from app.tables.statuses import JOB_ACTIVE, JobStatus, TrialState


@dataclass(frozen=True)
class JobResult:
    state: TrialState
    score: float | None = None
    val_losses: list[float] = field(default_factory=list)
    model_id: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class TrialOutcome:
    state: TrialState
    score: float | None = None
    score_std: float | None = None
    fold_scores: list[float] | None = None
    val_losses: list[float] = field(default_factory=list)
    model_id: str | None = None
    error: str | None = None


def job_result(job: Job, rounds: list[JobRound], metric: str) -> JobResult:
    """A job's part in its trial: its validation losses so far and, once it has
    succeeded, its score, the validation `metric` of the round it kept."""
    losses = [r.val_loss for r in sorted(rounds, key=lambda r: r.round) if r.val_loss is not None]
    if job.status in JOB_ACTIVE:
        return JobResult(TrialState.RUNNING, val_losses=losses)
    if job.status == JobStatus.CANCELLED:
        return JobResult(
            TrialState.CANCELLED, val_losses=losses, error=f"job {job.id} was cancelled",
        )  # fmt: skip
    if job.status == JobStatus.FAILED:
        return JobResult(
            TrialState.FAILED,
            val_losses=losses,
            error=f"job {job.id} failed ({job.error_code}): {job.error_message}",
        )
    kept = job.best_round if job.best_round is not None else job.current_round
    scored: dict[str, Any] = next((r.val_metrics for r in rounds if r.round == kept), {})
    value = scored.get(metric)
    if not isinstance(value, int | float) or not np.isfinite(value):
        return JobResult(
            TrialState.FAILED,
            val_losses=losses,
            error=f"job {job.id} has no validation {metric} for its round {kept}",
        )
    return JobResult(
        TrialState.DONE,
        score=float(value),
        val_losses=losses,
        model_id=job.model_id,
    )


def trial_outcome(results: list[JobResult]) -> TrialOutcome:
    """One job's result, or the folds' together: a failed or cancelled fold ends the
    trial; done when every fold is, scored by their mean, with the deviation across
    folds (numpy's population deviation, as scikit-learn's `std_test_score`)."""
    losses = _mean_losses(results)
    ended = [r for r in results if r.state in (TrialState.FAILED, TrialState.CANCELLED)]
    if ended:
        worst = next((r for r in ended if r.state == TrialState.FAILED), ended[0])
        return TrialOutcome(worst.state, val_losses=losses, error=worst.error)
    if any(r.state == TrialState.RUNNING for r in results):
        return TrialOutcome(TrialState.RUNNING, val_losses=losses)
    scores = [r.score for r in results if r.score is not None]
    many = len(results) > 1
    return TrialOutcome(
        TrialState.DONE,
        score=float(np.mean(scores)),
        score_std=float(np.std(scores)) if many else None,
        fold_scores=scores if many else None,
        val_losses=losses,
        # A fold's model saw part of the rows only: not the trial's.
        model_id=None if many else results[0].model_id,
    )


def _mean_losses(results: list[JobResult]) -> list[float]:
    """Per round, the folds' mean validation loss, for the rounds every fold has."""
    reached = min((len(r.val_losses) for r in results), default=0)
    return [float(np.mean([r.val_losses[i] for r in results])) for i in range(reached)]
