"""A sweep's step: the one code that moves a sweep and its trials, under the sweep's
row lock. It runs after each stage of a trial's job (the worker sends it once that
commits), and from the watchdog for whatever such message was lost; every run
re-reads everything and decides again, so running it twice, or late, is harmless.

Each step settles the running trials from their jobs, prunes those whose validation
loss falls behind, asks optuna for new trials up to the parallelism and the budget,
and, once none runs and none may start, picks the best trial and delivers its model.
"""

import logging
import time

from sqlalchemy.orm import Session

from app.dispatch import Dispatcher
from app.jobs.repository import JobRepository
from app.jobs.service import stop_job
from app.registry.repository import ModelRepository
from app.sweeps.events import record_sweep_event
from app.sweeps.launch import WAIT, final_spec, fold_specs, needs_final_job, start_jobs
from app.sweeps.outcome import job_result, trial_outcome
from app.sweeps.pruning import should_prune
from app.sweeps.repository import SweepRepository
from app.sweeps.search import TrialRecord, next_params
from app.sweeps.space import trial_spec
from app.sweeps.spec import SweepSpec
from app.tables import Job, RegisteredModel, Sweep, SweepTrial
from app.tables.base import now_s
from app.tables.statuses import (
    JOB_ACTIVE,
    SWEEP_TERMINAL,
    JobStatus,
    ModelStatus,
    SweepStatus,
    TrialState,
)
from app.tenancy.scope import SYSTEM

logger = logging.getLogger(__name__)

# optuna knows four trial states; a trial cancelled with its sweep counts as failed.
_RECORDED = {
    TrialState.RUNNING: "running",
    TrialState.DONE: "done",
    TrialState.PRUNED: "pruned",
    TrialState.FAILED: "failed",
    TrialState.CANCELLED: "failed",
}


def step_sweep(
    session: Session, dispatcher: Dispatcher, sweep_id: str, *, now: float | None = None
) -> bool:
    """Move the sweep on as far as its jobs allow; False when it has already ended."""
    now = time.time() if now is None else now
    sweeps = SweepRepository(session, SYSTEM)
    sweep = sweeps.get(sweep_id, for_update=True)
    if sweep is None or sweep.status in SWEEP_TERMINAL:
        return False
    spec = SweepSpec.model_validate(sweep.spec)
    sweep.stepped_at = now
    jobs = JobRepository(session, SYSTEM).of_sweep(sweep.id)
    trials = sweeps.trials(sweep.id)
    _settle(session, dispatcher, spec, sweep, trials, jobs, now)
    _prune(session, dispatcher, spec, sweep, trials, jobs, now)
    if sweep.final_job_id is not None:
        _finish_with(session, sweep, {job.id: job for job in jobs}.get(sweep.final_job_id))
        return True
    _launch(session, dispatcher, spec, sweep, trials, jobs, now)
    if not any(t.state == TrialState.RUNNING for t in trials) and not _may_start(
        spec, sweep, trials, now
    ):
        _deliver(session, dispatcher, spec, sweep, trials, jobs)
    return True


def records(trials: list[SweepTrial]) -> list[TrialRecord]:
    return [
        TrialRecord(
            number=t.number,
            params=t.params,
            state=_RECORDED[TrialState(t.state)],  # type: ignore[arg-type]
            score=t.score,
            intermediate=tuple(t.val_losses or ()),
        )
        for t in trials
    ]


def _settle(
    session: Session,
    dispatcher: Dispatcher,
    spec: SweepSpec,
    sweep: Sweep,
    trials: list[SweepTrial],
    jobs: list[Job],
    now: float,
) -> None:
    by_id = {job.id: job for job in jobs}
    repository = JobRepository(session, SYSTEM)
    for trial in trials:
        if trial.state != TrialState.RUNNING:
            continue
        mine = [by_id[job_id] for job_id in trial.job_ids if job_id in by_id]
        if len(mine) < len(trial.job_ids):
            _end_trial(session, dispatcher, sweep, trial, mine, TrialState.FAILED, now,
                       error="a job of the trial was deleted")  # fmt: skip
            continue
        outcome = trial_outcome(
            [job_result(job, repository.rounds(job.id), spec.metric) for job in mine]
        )
        if outcome.val_losses != list(trial.val_losses or []):
            trial.val_losses = outcome.val_losses
        if outcome.state == TrialState.RUNNING:
            continue
        trial.score, trial.score_std = outcome.score, outcome.score_std
        trial.fold_scores, trial.model_id = outcome.fold_scores, outcome.model_id
        # The step runs as the trial's last stage commits: `now` is its end, to the
        # sub-second (a job's finished_at is whole seconds).
        _end_trial(session, dispatcher, sweep, trial, mine, outcome.state, now,
                   error=outcome.error)  # fmt: skip


def _end_trial(
    session: Session,
    dispatcher: Dispatcher,
    sweep: Sweep,
    trial: SweepTrial,
    jobs: list[Job],
    state: TrialState,
    when: float,
    *,
    error: str | None = None,
    note: str | None = None,
) -> None:
    """Record how the trial ended and stop whatever of it still runs (the other folds
    of a failed fold, a pruned trial's job)."""
    trial.state, trial.finished_at, trial.error = state, max(when, trial.started_at), error
    for job in jobs:
        if job.status in JOB_ACTIVE:
            stop_job(session, dispatcher, job, f"trial {trial.number} of sweep {sweep.id} {state}")
    seconds = round(trial.finished_at - trial.started_at, 3)
    if state == TrialState.DONE:
        message = f"trial {trial.number} done: score {trial.score:.6g}"
    else:
        message = f"trial {trial.number} {state}" + (f": {note or error}" if note or error else "")
    record_sweep_event(
        session,
        sweep.id,
        f"trial.{state}",
        message,
        level="warning" if state == TrialState.FAILED else "info",
        trial=trial.number,
        score=trial.score,
        score_std=trial.score_std,
        seconds=seconds,
    )


def _prune(
    session: Session,
    dispatcher: Dispatcher,
    spec: SweepSpec,
    sweep: Sweep,
    trials: list[SweepTrial],
    jobs: list[Job],
    now: float,
) -> None:
    by_id = {job.id: job for job in jobs}
    for trial in trials:
        if trial.state != TrialState.RUNNING or not trial.val_losses:
            continue
        if should_prune(spec, records(trials), trial.number):
            losses = trial.val_losses
            _end_trial(
                session, dispatcher, sweep, trial,
                [by_id[j] for j in trial.job_ids if j in by_id], TrialState.PRUNED, now,
                note=f"validation loss {losses[-1]:.6g} after round {len(losses)} is behind "
                f"the other trials' ({spec.pruner} pruner)",
            )  # fmt: skip


def _may_start(spec: SweepSpec, sweep: Sweep, trials: list[SweepTrial], now: float) -> bool:
    if len(trials) >= spec.max_trials:
        return False
    return spec.max_seconds is None or now < sweep.created_at + spec.max_seconds


def _launch(
    session: Session,
    dispatcher: Dispatcher,
    spec: SweepSpec,
    sweep: Sweep,
    trials: list[SweepTrial],
    jobs: list[Job],
    now: float,
) -> None:
    """Ask for trials until `parallelism` run. Each ask sees the ones just asked as
    running, which TPE's constant liar steers away from."""
    while _may_start(spec, sweep, trials, now) and (
        sum(t.state == TrialState.RUNNING for t in trials) < spec.parallelism
    ):
        number = len(trials)
        params = next_params(spec, records(trials))
        specs = fold_specs(trial_spec(spec.template, params), spec.cv_folds)
        started = start_jobs(session, dispatcher, sweep, specs, jobs, sweep.task, number)
        if started is WAIT:
            # The first job of its kind is preparing the shards this one would share;
            # its prepare steps the sweep again once they are written.
            return
        assert isinstance(started, list)
        trial = SweepTrial(
            sweep_id=sweep.id,
            number=number,
            params=params,
            state=TrialState.RUNNING,
            job_ids=[job.id for job in started],
            val_losses=[],
            started_at=now,
        )
        SweepRepository(session, SYSTEM).add_trial(trial)
        trials.append(trial)
        jobs.extend(started)
        shared = (
            "" if started[0].shards_from is None else f" on the shards of {started[0].shards_from}"
        )
        record_sweep_event(
            session,
            sweep.id,
            "trial.started",
            f"trial {number} started as job(s) {', '.join(trial.job_ids)}{shared}",
            trial=number,
            params=params,
            job_ids=trial.job_ids,
        )


def best_of(spec: SweepSpec, trials: list[SweepTrial]) -> SweepTrial | None:
    """The done trial with the best score; the earliest of equals."""
    done = [t for t in trials if t.state == TrialState.DONE and t.score is not None]
    if not done:
        return None
    sign = -1.0 if spec.maximize else 1.0
    return min(done, key=lambda t: (sign * (t.score or 0.0), t.number))


def _deliver(
    session: Session,
    dispatcher: Dispatcher,
    spec: SweepSpec,
    sweep: Sweep,
    trials: list[SweepTrial],
    jobs: list[Job],
) -> None:
    best = best_of(spec, trials)
    if best is None:
        first = next((t.error for t in trials if t.error), None)
        _end(session, sweep, SweepStatus.FAILED, code="no_trial_succeeded",
             message=f"none of {len(trials)} trial(s) finished with a score"
             + (f"; the first failure: {first}" if first else ""))  # fmt: skip
        return
    sweep.best_trial = best.number
    record_sweep_event(
        session,
        sweep.id,
        "sweep.best_trial",
        f"trial {best.number} is best: {spec.metric} {best.score:.6g}",
        trial=best.number,
        score=best.score,
        params=best.params,
    )
    if not needs_final_job(spec):
        _deploy_trial_model(session, sweep, best)
        return
    started = start_jobs(
        session, dispatcher, sweep, [final_spec(spec, best.params)], jobs, sweep.task, None
    )
    assert isinstance(started, list)
    sweep.final_job_id = started[0].id
    record_sweep_event(
        session,
        sweep.id,
        "sweep.final_job",
        f"job {started[0].id} trains trial {best.number}'s settings for delivery"
        + (" on every fold's rows" if spec.cv_folds else ", through the template's gate"),
        job_id=started[0].id,
        trial=best.number,
    )


def _deploy_trial_model(session: Session, sweep: Sweep, best: SweepTrial) -> None:
    """A trial's model is registered undeployed; the best one is the sweep's result."""
    model: RegisteredModel | None = None
    if best.model_id is not None:
        model = ModelRepository(session, SYSTEM).get(best.model_id, for_update=True)
    if model is None:
        _end(session, sweep, SweepStatus.FAILED, code="model_gone",
             message=f"the model of the best trial {best.number} is gone")  # fmt: skip
        return
    if model.status == ModelStatus.UNDEPLOYED:
        model.status = ModelStatus.DEPLOYED
    sweep.model_id = model.id
    _end(session, sweep, SweepStatus.SUCCEEDED)


def _finish_with(session: Session, sweep: Sweep, job: Job | None) -> None:
    if job is not None and job.status in JOB_ACTIVE:
        return
    if job is not None and job.status == JobStatus.SUCCEEDED:
        sweep.model_id = job.model_id
        _end(session, sweep, SweepStatus.SUCCEEDED)
        return
    why = "was deleted" if job is None else f"ended {job.status}: {job.error_message or ''}"
    _end(session, sweep, SweepStatus.FAILED, code="final_job_failed",
         message=f"the final job {sweep.final_job_id} {why}".strip())  # fmt: skip


def _end(
    session: Session,
    sweep: Sweep,
    status: SweepStatus,
    *,
    code: str | None = None,
    message: str | None = None,
) -> None:
    sweep.status, sweep.finished_at = status, now_s()
    sweep.error_code, sweep.error_message = code, message
    text = f"sweep {status}" + (f" ({code}): {message}" if code else "")
    if status == SweepStatus.SUCCEEDED:
        text += f"; model {sweep.model_id}"
    record_sweep_event(
        session,
        sweep.id,
        "sweep.status",
        text,
        level="error" if status == SweepStatus.FAILED else "info",
        status=status,
        model_id=sweep.model_id,
    )


def stop_sweep(
    session: Session,
    dispatcher: Dispatcher,
    sweep: Sweep,
    reason: str,
    *,
    failure: tuple[str, str] | None = None,
) -> None:
    """End the sweep (row locked by the caller) cancelled, or failed with `failure`
    (code, message): every unfinished job of it stopped, its running trials cancelled."""
    jobs = JobRepository(session, SYSTEM).of_sweep(sweep.id)
    by_id = {job.id: job for job in jobs}
    for trial in SweepRepository(session, SYSTEM).trials(sweep.id):
        if trial.state == TrialState.RUNNING:
            _end_trial(session, dispatcher, sweep, trial,
                       [by_id[j] for j in trial.job_ids if j in by_id],
                       TrialState.CANCELLED, time.time(), note=reason)  # fmt: skip
    final = by_id.get(sweep.final_job_id or "")
    if final is not None and final.status in JOB_ACTIVE:
        stop_job(session, dispatcher, final, reason)
    if failure is None:
        _end(session, sweep, SweepStatus.CANCELLED)
    else:
        _end(session, sweep, SweepStatus.FAILED, code=failure[0], message=failure[1])
