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
from dataclasses import dataclass

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


@dataclass
class _Step:
    """What one step reads, under the sweep's lock, and every phase of it acts on."""

    session: Session
    dispatcher: Dispatcher
    spec: SweepSpec
    sweep: Sweep
    trials: list[SweepTrial]
    jobs: list[Job]
    now: float

    def jobs_of(self, trial: SweepTrial) -> list[Job]:
        by_id = {job.id: job for job in self.jobs}
        return [by_id[job_id] for job_id in trial.job_ids if job_id in by_id]

    def running(self) -> list[SweepTrial]:
        return [t for t in self.trials if t.state == TrialState.RUNNING]

    def may_start(self) -> bool:
        if len(self.trials) >= self.spec.max_trials:
            return False
        limit = self.spec.max_seconds
        return limit is None or self.now < self.sweep.created_at + limit

    def end_trial(
        self,
        trial: SweepTrial,
        state: TrialState,
        *,
        error: str | None = None,
        note: str | None = None,
    ) -> None:
        end_trial(self.session, self.dispatcher, self.sweep, trial, self.jobs_of(trial),
                  state, self.now, error=error, note=note)  # fmt: skip

    def settle(self) -> None:
        """End the trials whose jobs ended; note every running one's losses so far."""
        repository = JobRepository(self.session, SYSTEM)
        for trial in self.running():
            mine = self.jobs_of(trial)
            if len(mine) < len(trial.job_ids):
                self.end_trial(trial, TrialState.FAILED, error="a job of the trial was deleted")
                continue
            outcome = trial_outcome(
                [job_result(job, repository.rounds(job.id), self.spec.metric) for job in mine]
            )
            if outcome.val_losses != list(trial.val_losses or []):
                trial.val_losses = outcome.val_losses
            if outcome.state == TrialState.RUNNING:
                continue
            trial.score, trial.score_std = outcome.score, outcome.score_std
            trial.fold_scores, trial.model_id = outcome.fold_scores, outcome.model_id
            # The step runs as the trial's last stage commits: `now` is its end, to the
            # sub-second (a job's finished_at is whole seconds).
            self.end_trial(trial, outcome.state, error=outcome.error)

    def prune(self) -> None:
        for trial in self.running():
            if trial.val_losses and should_prune(self.spec, records(self.trials), trial.number):
                losses = trial.val_losses
                self.end_trial(
                    trial,
                    TrialState.PRUNED,
                    note=f"validation loss {losses[-1]:.6g} after round {len(losses)} is "
                    f"behind the other trials' ({self.spec.pruner} pruner)",
                )

    def launch(self) -> None:
        """Ask for trials until `parallelism` run. Each ask sees the ones just asked as
        running, which TPE's constant liar steers away from."""
        spec, sweep = self.spec, self.sweep
        while self.may_start() and len(self.running()) < spec.parallelism:
            number = len(self.trials)
            params = next_params(spec, records(self.trials))
            specs = fold_specs(trial_spec(spec.template, params), spec.cv_folds)
            started = start_jobs(
                self.session, self.dispatcher, sweep, specs, self.jobs, sweep.task, number
            )
            if started is WAIT:
                # The first job of its kind is preparing the shards this one would
                # share; its prepare steps the sweep again once they are written.
                return
            assert isinstance(started, list)
            trial = SweepTrial(
                sweep_id=sweep.id,
                number=number,
                params=params,
                state=TrialState.RUNNING,
                job_ids=[job.id for job in started],
                val_losses=[],
                started_at=self.now,
            )
            SweepRepository(self.session, SYSTEM).add_trial(trial)
            self.trials.append(trial)
            self.jobs.extend(started)
            source = started[0].shards_from
            record_sweep_event(
                self.session,
                sweep.id,
                "trial.started",
                f"trial {number} started as job(s) {', '.join(trial.job_ids)}"
                + (f" on the shards of {source}" if source else ""),
                trial=number,
                params=params,
                job_ids=trial.job_ids,
            )

    def deliver(self) -> None:
        session, spec, sweep = self.session, self.spec, self.sweep
        best = best_of(spec, self.trials)
        if best is None:
            first = next((t.error for t in self.trials if t.error), None)
            _end(session, sweep, SweepStatus.FAILED, code="no_trial_succeeded",
                 message=f"none of {len(self.trials)} trial(s) finished with a score"
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
            session, self.dispatcher, sweep, [final_spec(spec, best.params)], self.jobs,
            sweep.task, None,
        )  # fmt: skip
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


def step_sweep(
    session: Session, dispatcher: Dispatcher, sweep_id: str, *, now: float | None = None
) -> bool:
    """Move the sweep on as far as its jobs allow; False when it has already ended."""
    sweeps = SweepRepository(session, SYSTEM)
    sweep = sweeps.get(sweep_id, for_update=True)
    if sweep is None or sweep.status in SWEEP_TERMINAL:
        return False
    step = _Step(
        session=session,
        dispatcher=dispatcher,
        spec=SweepSpec.model_validate(sweep.spec),
        sweep=sweep,
        trials=sweeps.trials(sweep.id),
        jobs=JobRepository(session, SYSTEM).of_sweep(sweep.id),
        now=time.time() if now is None else now,
    )
    sweep.stepped_at = step.now
    step.settle()
    step.prune()
    if sweep.final_job_id is not None:
        _finish_with(
            session, sweep, next((j for j in step.jobs if j.id == sweep.final_job_id), None)
        )
        return True
    step.launch()
    if not step.running() and not step.may_start():
        step.deliver()
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


def end_trial(
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


def best_of(spec: SweepSpec, trials: list[SweepTrial]) -> SweepTrial | None:
    """The done trial with the best score; the earliest of equals."""
    done = [t for t in trials if t.state == TrialState.DONE and t.score is not None]
    if not done:
        return None
    sign = -1.0 if spec.maximize else 1.0
    return min(done, key=lambda t: (sign * (t.score or 0.0), t.number))


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
            end_trial(session, dispatcher, sweep, trial,
                      [by_id[j] for j in trial.job_ids if j in by_id],
                      TrialState.CANCELLED, time.time(), note=reason)  # fmt: skip
    final = by_id.get(sweep.final_job_id or "")
    if final is not None and final.status in JOB_ACTIVE:
        stop_job(session, dispatcher, final, reason)
    if failure is None:
        _end(session, sweep, SweepStatus.CANCELLED)
    else:
        _end(session, sweep, SweepStatus.FAILED, code=failure[0], message=failure[1])
