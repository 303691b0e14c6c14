"""Which values the next trial tries: optuna's samplers (TPE, or random search), asked
through a study rebuilt from the sweep's own trial records every time.

The records in SQL are the truth; optuna keeps nothing between calls, so any worker can
ask, after any restart, and no optuna schema lives beside Alembic's. Asking is a
function of the records: the sampler is seeded with the sweep's seed and the trial's
number, so the same history always proposes the same next trial, and a retried step
proposes what the first attempt did.
"""

import json
import logging
from dataclasses import dataclass
from typing import Any, Literal

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState, create_trial
from pydantic import JsonValue

from app.sweeps.spec import Choice, IntRange, LogUniform, SweepSpec, Uniform

# optuna logs every trial it is told of at INFO; the sweep's own events say it once.
optuna.logging.set_verbosity(logging.WARNING)

TrialOutcome = Literal["running", "done", "pruned", "failed"]
_STATES = {
    "running": TrialState.RUNNING,
    "done": TrialState.COMPLETE,
    "pruned": TrialState.PRUNED,
    "failed": TrialState.FAIL,
}


@dataclass(frozen=True)
class TrialRecord:
    """One trial as the sweep stored it: its values as drawn, and how it went."""

    number: int
    params: dict[str, JsonValue]
    state: TrialOutcome
    score: float | None = None
    # Validation score after each round so far, for the pruners.
    intermediate: tuple[float, ...] = ()


def distributions(spec: SweepSpec) -> dict[str, BaseDistribution]:
    """A choice's values go to optuna as canonical JSON text: it compares them as
    categories, and lists or model blocks are not values it can hold."""
    found: dict[str, BaseDistribution] = {}
    for key, dimension in spec.space.items():
        if isinstance(dimension, LogUniform):
            found[key] = FloatDistribution(*dimension.log_uniform, log=True)
        elif isinstance(dimension, Uniform):
            found[key] = FloatDistribution(*dimension.uniform)
        elif isinstance(dimension, IntRange):
            found[key] = IntDistribution(*dimension.int, step=dimension.step)
        else:
            assert isinstance(dimension, Choice)
            found[key] = CategoricalDistribution([_encode(v) for v in dimension.choice])
    return found


def _encode(value: JsonValue) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _to_optuna(spec: SweepSpec, params: dict[str, JsonValue]) -> dict[str, Any]:
    return {
        key: _encode(value) if isinstance(spec.space[key], Choice) else value
        for key, value in params.items()
    }


def _from_optuna(spec: SweepSpec, params: dict[str, Any]) -> dict[str, JsonValue]:
    decoded: dict[str, JsonValue] = {}
    for key, value in params.items():
        decoded[key] = json.loads(value) if isinstance(spec.space[key], Choice) else value
    return decoded


def study_of(spec: SweepSpec, records: list[TrialRecord]) -> optuna.Study:
    """An in-memory study holding the records, with the sampler the next trial is asked
    from (seeded by the sweep's seed and that trial's number)."""
    number = len(records)
    seed = spec.seed * 1_000_003 + number
    sampler: optuna.samplers.BaseSampler
    if spec.sampler == "random":
        sampler = optuna.samplers.RandomSampler(seed=seed)
    else:
        sampler = optuna.samplers.TPESampler(
            seed=seed,
            n_startup_trials=max(2, min(10, spec.max_trials // 3)),
            # Trials still running count as a bad value, so parallel asks spread out.
            constant_liar=True,
        )
    study = optuna.create_study(
        direction="maximize" if spec.maximize else "minimize", sampler=sampler
    )
    space = distributions(spec)
    for record in sorted(records, key=lambda r: r.number):
        state = _STATES[record.state]
        finished = state == TrialState.COMPLETE and record.score is not None
        study.add_trial(
            create_trial(
                params=_to_optuna(spec, record.params),
                distributions=space,
                value=record.score if finished else None,
                intermediate_values=dict(enumerate(record.intermediate, start=1)),
                state=state if finished or state != TrialState.COMPLETE else TrialState.FAIL,
            )
        )
    return study


def next_params(spec: SweepSpec, records: list[TrialRecord]) -> dict[str, JsonValue]:
    """The values of trial number `len(records)`."""
    study = study_of(spec, records)
    trial = study.ask(distributions(spec))
    return _from_optuna(spec, trial.params)
