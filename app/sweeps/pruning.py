"""Whether a running trial stops early: optuna's median or successive-halving pruner
on the per-round validation loss that every job already records.

As for sampling, the study is rebuilt from the sweep's records for each decision. It
minimises the validation loss whatever the sweep's metric: a loss is what every round
reports, for every learner, and lower is always better.
"""

import optuna
from optuna.trial import TrialState, create_trial

from app.sweeps.search import TrialRecord
from app.sweeps.spec import SweepSpec

# A trial is never stopped before this many rounds, nor before this many others have
# finished to compare it with: one noisy early round must not end it.
WARMUP_ROUNDS = 2
STARTUP_TRIALS = 3


def pruner_for(spec: SweepSpec) -> optuna.pruners.BasePruner:
    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=STARTUP_TRIALS, n_warmup_steps=WARMUP_ROUNDS
        )
    if spec.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=WARMUP_ROUNDS, reduction_factor=REDUCTION_FACTOR
        )
    return optuna.pruners.NopPruner()


REDUCTION_FACTOR = 3


def _rungs(spec: SweepSpec, losses: tuple[float, ...]) -> dict[str, float]:
    """What successive halving records on a trial as it passes each rung (optuna keeps
    it in the trial's system attributes): the loss at the rung's round. Rebuilt here,
    since the study is new for every decision."""
    if spec.pruner != "successive_halving":
        return {}
    rungs: dict[str, float] = {}
    rung, step = 0, WARMUP_ROUNDS
    while step <= len(losses):
        rungs[f"completed_rung_{rung}"] = losses[step - 1]
        rung, step = rung + 1, step * REDUCTION_FACTOR
    return rungs


def should_prune(spec: SweepSpec, records: list[TrialRecord], number: int) -> bool:
    """Whether trial `number` (running, with its losses so far in `intermediate`)
    stops now, judged against every other trial's losses at the same rounds."""
    if spec.pruner == "none":
        return False
    study = optuna.create_study(direction="minimize", pruner=pruner_for(spec))
    target = None
    for record in sorted(records, key=lambda r: r.number):
        losses = dict(enumerate(record.intermediate, start=1))
        if record.number == number:
            target = record
            continue
        state = {
            "done": TrialState.COMPLETE,
            "pruned": TrialState.PRUNED,
            "failed": TrialState.FAIL,
            "running": TrialState.RUNNING,
        }[record.state]
        last = record.intermediate[-1] if record.intermediate else None
        if state == TrialState.COMPLETE and last is None:
            state = TrialState.FAIL
        study.add_trial(
            create_trial(
                state=state,
                value=last if state == TrialState.COMPLETE else None,
                intermediate_values=losses,
                system_attrs=_rungs(spec, record.intermediate),
            )
        )
    if target is None or not target.intermediate:
        return False
    study.add_trial(
        create_trial(
            state=TrialState.RUNNING,
            intermediate_values=dict(enumerate(target.intermediate, start=1)),
        )
    )
    frozen = study.get_trials(deepcopy=False)[-1]
    return bool(study.pruner.prune(study, frozen))
