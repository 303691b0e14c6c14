"""Which dimensions mattered: optuna's fANOVA importances over the done trials."""

import logging

import optuna

from app.sweeps.search import TrialRecord, study_of
from app.sweeps.spec import SweepSpec

logger = logging.getLogger(__name__)

# fANOVA fits a forest on the done trials: with fewer, every split is noise.
MIN_DONE = 3


def param_importances(spec: SweepSpec, records: list[TrialRecord]) -> dict[str, float] | None:
    """Each dimension's share of the score's variance (summing to 1), highest first;
    None while too few trials are done, or when the done ones did not vary."""
    done = [r for r in records if r.state == "done" and r.score is not None]
    if len(done) < MIN_DONE:
        return None
    study = study_of(spec, done)
    try:
        found = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=spec.seed)
        )
    except (RuntimeError, ValueError) as exc:
        # optuna refuses a space whose done trials drew one value for every dimension.
        logger.info("no parameter importances: %s", exc)
        return None
    return {key: float(value) for key, value in found.items()}
