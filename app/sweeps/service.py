"""Sweep use cases on the API side: check a sweep against its dataset, start it, read
it, cancel it. Everything after the start is the step's (`app.sweeps.step`)."""

import time

from sqlalchemy.orm import Session

from app.datasets.repository import DatasetRepository
from app.dispatch import Dispatcher
from app.errors import APIError, NotFound
from app.idempotency import IdempotencyRepository, fingerprint
from app.jobs.capacity import check_parameter_limit
from app.jobs.schemas import JobError
from app.jobs.service import SpecError, check_applicable, check_spec
from app.jobs.spec import JobSpec, metric_fits_task
from app.outbox import send_after_commit
from app.sweeps.events import record_sweep_event
from app.sweeps.launch import fold_specs
from app.sweeps.repository import SweepRepository
from app.sweeps.schemas import BestTrialOut, SweepEventOut, SweepOut, TrialOut
from app.sweeps.space import SpaceError, check_sweep, corner_values, trial_spec
from app.sweeps.spec import SweepSpec
from app.sweeps.step import best_of, stop_sweep
from app.tables import Sweep, SweepTrial
from app.tables.statuses import SWEEP_TERMINAL, DatasetStatus, SweepStatus, TrialState
from app.tenancy.limits import Limits, check_job_size, check_running_jobs
from app.tenancy.scope import Scope


def create_sweep(
    session: Session,
    dispatcher: Dispatcher,
    spec: SweepSpec,
    tenant_id: str,
    limits: Limits | None = None,
    idempotency_key: str | None = None,
) -> Sweep:
    body = spec.model_dump(mode="json")
    keys = IdempotencyRepository(session, tenant_id)
    if idempotency_key is not None:
        earlier = keys.find("sweeps.create", idempotency_key, fingerprint(body))
        if earlier is not None:
            return get_sweep(session, earlier, tenant_id)
    try:
        check_sweep(spec)
    except SpaceError as exc:
        raise APIError(422, "invalid_sweep", exc.message, exc.param) from exc
    template = JobSpec.model_validate(spec.template)
    _check_template(spec, template)
    dataset = DatasetRepository(session, Scope.tenant(tenant_id)).get(template.dataset_id)
    if dataset is None:
        raise NotFound("dataset", template.dataset_id, param="template.dataset_id")
    if dataset.status != DatasetStatus.READY:
        raise APIError(
            409,
            "dataset_not_ready",
            f"Dataset {dataset.id} is {dataset.status}; a sweep starts on a ready dataset "
            "(its trials are checked against the columns).",
            "template.dataset_id",
        )
    task = _check_trials(spec, template, dataset.columns or [], dataset.rows or 0, limits)
    if limits is not None:
        check_running_jobs(session, limits, tenant_id, adding=spec.parallelism)
    sweep = SweepRepository(session, Scope.tenant(tenant_id)).add(
        Sweep(
            tenant_id=tenant_id,
            dataset_id=dataset.id,
            status=SweepStatus.RUNNING,
            task=task,
            spec=body,
            maximize=spec.maximize,
            parallelism=spec.parallelism,
            stepped_at=time.time(),
        )
    )
    record_sweep_event(
        session,
        sweep.id,
        "sweep.created",
        f"sweep of up to {spec.max_trials} trial(s), {spec.parallelism} at once, on "
        f"dataset {dataset.id}, by {spec.metric} ({'max' if spec.maximize else 'min'}imized)",
    )
    if idempotency_key is not None:
        keys.remember("sweeps.create", idempotency_key, sweep.id, fingerprint(body))
    send_after_commit(session, dispatcher, "sweep_step", sweep_id=sweep.id)
    return sweep


def _check_template(spec: SweepSpec, template: JobSpec) -> None:
    if template.init_from is not None:
        raise APIError(
            422,
            "invalid_sweep",
            "a sweep's trials train from scratch; warm-start a job with the best trial's "
            "params instead",
            "template.init_from",
        )
    if template.validation.cv_folds is not None:
        raise APIError(
            422,
            "invalid_sweep",
            "set the sweep's cv_folds: it runs one job per fold",
            "template.validation.cv_folds",
        )
    if spec.cv_folds is None and template.validation.validation_fraction == 0:
        raise APIError(
            422,
            "invalid_sweep",
            "trials are scored and pruned on the validation rows: validation_fraction must "
            "be above 0 (or set cv_folds)",
            "template.validation.validation_fraction",
        )


def _check_trials(
    spec: SweepSpec,
    template: JobSpec,
    columns: list[dict[str, object]],
    rows: int,
    limits: Limits | None,
) -> str:
    """Every value a dimension can draw makes a job the dataset takes; the task."""
    try:
        task = check_spec(fold_specs(template, spec.cv_folds)[0], columns, rows)
    except SpecError as exc:
        raise APIError(422, "invalid_sweep", exc.message, f"template.{exc.param}") from exc
    try:
        check_applicable(template)
    except APIError as exc:
        raise APIError(exc.status_code, exc.code, exc.message, f"template.{exc.param}") from exc
    if not metric_fits_task(spec.metric, task):
        raise APIError(422, "invalid_sweep", f"metric {spec.metric!r} does not score a {task} task",
                       "metric")  # fmt: skip
    for key, dimension in spec.space.items():
        for value in corner_values(dimension):
            trial = trial_spec(spec.template, {key: value})
            try:
                check_spec(trial, columns, rows)
                check_applicable(trial)
                check_parameter_limit(trial, limits)
                if limits is not None:
                    rounds, rounds_param = trial.quota_rounds
                    check_job_size(limits, shards=trial.distribution.shards, rounds=rounds,
                                   rounds_param=rounds_param)  # fmt: skip
            except SpecError as exc:
                raise APIError(422, "invalid_sweep", f"{value!r}: {exc.message}",
                               f"space.{key}") from exc  # fmt: skip
            except APIError as exc:
                raise APIError(exc.status_code, exc.code, f"{value!r}: {exc.message}",
                               f"space.{key}") from exc  # fmt: skip
    return task


def get_sweep(session: Session, sweep_id: str, tenant_id: str) -> Sweep:
    sweep = SweepRepository(session, Scope.tenant(tenant_id)).get(sweep_id)
    if sweep is None:
        raise NotFound("sweep", sweep_id)
    return sweep


def list_sweeps(
    session: Session, *, limit: int, after: str | None, tenant_id: str
) -> tuple[list[Sweep], bool]:
    return SweepRepository(session, Scope.tenant(tenant_id)).page(limit=limit, after=after)


def cancel_sweep(session: Session, dispatcher: Dispatcher, sweep_id: str, tenant_id: str) -> Sweep:
    """Idempotent: a cancelled sweep is returned unchanged."""
    sweep = SweepRepository(session, Scope.tenant(tenant_id)).get(sweep_id, for_update=True)
    if sweep is None:
        raise NotFound("sweep", sweep_id)
    if sweep.status == SweepStatus.CANCELLED:
        return sweep
    if sweep.status in SWEEP_TERMINAL:
        raise APIError(
            409, "sweep_finished", f"Sweep {sweep_id} already {sweep.status}; it cannot be "
            "cancelled.", "id",
        )  # fmt: skip
    stop_sweep(session, dispatcher, sweep, "cancelled with its sweep")
    return sweep


def list_events(
    session: Session, sweep_id: str, *, limit: int, after: str | None, tenant_id: str
) -> tuple[list[SweepEventOut], bool]:
    get_sweep(session, sweep_id, tenant_id)
    rows, has_more = SweepRepository(session, Scope.tenant(tenant_id)).events(
        sweep_id, limit=limit, after=after
    )
    return [SweepEventOut.model_validate(e) for e in rows], has_more


def trials_of(session: Session, sweep: Sweep) -> list[SweepTrial]:
    return SweepRepository(session, Scope.tenant(sweep.tenant_id)).trials(sweep.id)


def sweep_out(session: Session, sweep: Sweep, *, now: float | None = None) -> SweepOut:
    now = time.time() if now is None else now
    spec = SweepSpec.model_validate(sweep.spec)
    trials = trials_of(session, sweep)
    best = (
        best_of(spec, trials)
        if sweep.best_trial is None
        else next((t for t in trials if t.number == sweep.best_trial), None)
    )
    error = None
    if sweep.error_code:
        error = JobError(code=sweep.error_code, message=sweep.error_message or "")
    return SweepOut(
        id=sweep.id,
        status=sweep.status,
        spec=spec,
        task=sweep.task,
        metric=spec.metric,
        direction="maximize" if sweep.maximize else "minimize",
        trials=[trial_out(t, now) for t in trials],
        counts={state: sum(t.state == state for t in trials) for state in TrialState},
        best_trial=None
        if best is None or best.score is None
        else BestTrialOut(
            number=best.number,
            params=best.params,
            score=best.score,
            score_std=best.score_std,
            job_id=best.job_ids[0],
            model_id=sweep.model_id if sweep.best_trial is not None else None,
        ),
        final_job_id=sweep.final_job_id,
        model_id=sweep.model_id,
        error=error,
        created_at=sweep.created_at,
        finished_at=sweep.finished_at,
    )


def trial_out(trial: SweepTrial, now: float) -> TrialOut:
    end = trial.finished_at if trial.finished_at is not None else now
    return TrialOut(
        number=trial.number,
        params=trial.params,
        state=trial.state,
        score=trial.score,
        score_std=trial.score_std,
        fold_scores=trial.fold_scores,
        job_id=trial.job_ids[0],
        job_ids=trial.job_ids,
        model_id=trial.model_id,
        rounds=len(trial.val_losses or []),
        val_losses=list(trial.val_losses or []),
        error=trial.error,
        seconds=round(max(0.0, end - trial.started_at), 3),
    )
