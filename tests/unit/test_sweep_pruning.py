"""Pruning a running trial on its per-round validation loss, against the sweep's other
trials at the same rounds (issue 20, step 1): optuna's median and successive-halving
pruners, on a study rebuilt from the records for each decision."""

from typing import Any

import pytest

from app.sweeps.pruning import should_prune
from app.sweeps.search import TrialRecord
from app.sweeps.spec import SweepSpec

EXAMPLE: dict[str, Any] = SweepSpec.model_config["json_schema_extra"]["example"]  # type: ignore[assignment,index]


def _finished(count: int) -> list[TrialRecord]:
    """Trials whose loss falls from 1 towards 0.1 over ten rounds."""
    return [
        TrialRecord(n, {}, "done", 0.9, tuple(1.0 / (r + 1 + n) for r in range(10)))
        for n in range(count)
    ]


@pytest.mark.parametrize("pruner", ["median", "successive_halving"])
def test_a_trial_far_behind_the_others_is_pruned_and_one_ahead_is_not(pruner: str) -> None:
    sweep = SweepSpec.model_validate({**EXAMPLE, "pruner": pruner})
    behind = TrialRecord(4, {}, "running", None, (2.0, 2.0, 2.0, 2.0))
    ahead = TrialRecord(4, {}, "running", None, (0.5, 0.2, 0.1, 0.05))
    assert should_prune(sweep, [*_finished(4), behind], 4)
    assert not should_prune(sweep, [*_finished(4), ahead], 4)


def test_no_trial_is_pruned_too_early_or_without_a_pruner() -> None:
    median = SweepSpec.model_validate({**EXAMPLE, "pruner": "median"})
    first_round = TrialRecord(4, {}, "running", None, (5.0,))
    assert not should_prune(median, [*_finished(4), first_round], 4)  # its warm-up
    behind = TrialRecord(1, {}, "running", None, (2.0, 2.0, 2.0))
    assert not should_prune(median, [*_finished(1), behind], 1)  # too few to compare
    off = SweepSpec.model_validate({**EXAMPLE, "pruner": "none"})
    assert not should_prune(
        off, [*_finished(4), TrialRecord(4, {}, "running", None, (9.0,) * 5)], 4
    )
    assert not should_prune(median, _finished(4), 9)  # no such trial
