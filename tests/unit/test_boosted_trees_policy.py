"""Boosted trees on the round protocol, run by `run_rounds` exactly as the workers run
the rounds: the same trees at 1, 4 and 8 shards for every loss, the same trees as one
process growing them whole, byte-identical repeats of a shard task and of a merge,
early stopping at a tree's end, and the accuracy of scikit-learn's histogram boosting."""

import numpy as np
import pytest
from safetensors.torch import save
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine
from sklearn.ensemble import HistGradientBoostingClassifier
from test_tree_growth import boost, problem

from app.training.federated import run_rounds
from app.training.parametric import EarlyStopping
from app.training.protocol import StateDict
from app.training.trees.binning import bin_edges, bin_matrix
from app.training.trees.objectives import objective_for
from app.training.trees.policy import (
    BoostedTreesPolicy,
    IncompleteRoundError,
    ensemble_of,
    row_uniforms,
)
from app.training.trees.scores import scores_of
from app.training.trees.splits import SplitRules


def policy_for(
    x: np.ndarray, y: np.ndarray, task: str, classes: int = 0, **options: object
) -> BoostedTreesPolicy:
    objective = objective_for(task, classes)
    settings: dict[str, object] = {
        "n_trees": 10,
        "max_depth": 3,
        "learning_rate": 0.3,
        "rules": SplitRules(l2=1.0, min_child_weight=1.0),
        **options,
    }
    return BoostedTreesPolicy(
        edges=tuple(bin_edges(x[:, j], 32) for j in range(x.shape[1])),
        objective=objective,
        base_score=tuple(objective.base_score(y).tolist()),
        **settings,  # type: ignore[arg-type]
    )


def binned(policy: BoostedTreesPolicy, x: np.ndarray) -> np.ndarray:
    assert policy.edges is not None
    return bin_matrix(x, list(policy.edges))


def dealt(
    policy: BoostedTreesPolicy, x: np.ndarray, y: np.ndarray, shards: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    bins = binned(policy, x)
    return [(bins[p], y[p]) for p in np.array_split(np.arange(len(y)), shards)]


def classification(classes: int, rows: int = 600) -> tuple[np.ndarray, np.ndarray]:
    x, y = problem(rows=rows)
    edges = np.quantile(y, np.linspace(0, 1, classes + 1)[1:-1])
    return x, np.searchsorted(edges, y).astype(np.float64)


CASES = {
    "squared_error": (lambda: problem(), "regression", 0),
    "logistic": (lambda: classification(2), "classification", 2),
    "softmax": (lambda: classification(3), "classification", 3),
}


def assert_same_trees(a: StateDict, b: StateDict) -> None:
    one, other = ensemble_of(a), ensemble_of(b)
    assert one.n_trees == other.n_trees > 0
    for name in ("feature", "threshold_bin", "default_left", "left", "right", "tree_output"):
        np.testing.assert_array_equal(getattr(other, name), getattr(one, name))
    np.testing.assert_allclose(other.value, one.value, rtol=0, atol=1e-6)


@pytest.mark.parametrize("case", list(CASES))
def test_the_same_trees_at_1_4_and_8_shards(case: str) -> None:
    make, task, classes = CASES[case]
    x, y = make()
    policy = policy_for(x, y, task, classes, colsample=0.8, seed=5)
    one = run_rounds(policy, dealt(policy, x, y, 1))
    assert one.rounds_run == policy.rounds == 30
    for shards in (4, 8):
        assert_same_trees(run_rounds(policy, dealt(policy, x, y, shards)).state, one.state)
    splits = (ensemble_of(one.state).feature >= 0).sum()
    assert splits > 10 * max(classes, 1)


def test_rounds_grow_the_trees_one_process_grows_whole() -> None:
    x, y = problem()
    policy = policy_for(x, y, "regression", n_trees=20, learning_rate=0.3)
    by_rounds = ensemble_of(run_rounds(policy, dealt(policy, x, y, 4)).state)
    whole, _ = boost(x, y, shards=1, n_trees=20, max_depth=3, learning_rate=0.3, max_bins=32)
    for name in ("feature", "threshold_bin", "default_left", "threshold"):
        np.testing.assert_array_equal(getattr(by_rounds, name), getattr(whole, name))
    np.testing.assert_allclose(by_rounds.value, whole.value, rtol=0, atol=1e-9)


def test_a_repeated_shard_task_and_merge_write_the_same_bytes() -> None:
    x, y = classification(3)
    policy = policy_for(x, y, "classification", 3)
    shards = dealt(policy, x, y, 3)
    state = policy.initial_state()
    for round_ in range(1, 6):
        results = [
            policy.train_shard(round_, s, state, fx, fy, device=None)  # type: ignore[arg-type]
            for s, (fx, fy) in enumerate(shards)
        ]
        again = policy.train_shard(round_, 1, state, *shards[1], device=None)  # type: ignore[arg-type]
        assert save(again.state) == save(results[1].state)
        merged = policy.aggregate(round_, state, results).state
        assert save(policy.aggregate(round_, state, results).state) == save(merged)
        state = merged


def test_early_stopping_keeps_the_best_tree_boundary() -> None:
    x, y = problem(rows=400)
    train = (x[:300], y[:300])
    policy = policy_for(
        x[:300],
        y[:300],
        "regression",
        n_trees=200,
        max_depth=4,
        learning_rate=0.8,
        rules=SplitRules(l2=0.0, min_child_weight=1.0),
        early_stopping=EarlyStopping(patience=3),
    )
    validation = (binned(policy, x[300:]), y[300:])
    result = run_rounds(policy, dealt(policy, *train, 2), validation=validation)
    assert result.rounds_run < policy.rounds
    assert result.best_round is not None and result.best_round % policy.max_depth == 0
    assert result.rounds_run - result.best_round == 3 * policy.max_depth
    boundary_losses = result.history[policy.max_depth - 1 :: policy.max_depth]
    assert min(boundary_losses) == result.history[result.best_round - 1]


@pytest.mark.parametrize("loader", [load_breast_cancer, load_wine], ids=["binary", "multiclass"])
def test_accuracy_at_histogram_boostings_level(loader) -> None:  # type: ignore[no-untyped-def]
    x, y = loader(return_X_y=True)
    y = y.astype(np.float64)
    test = np.arange(len(y)) % 4 == 0
    classes = len(np.unique(y))
    policy = policy_for(
        x[~test], y[~test], "classification", classes, n_trees=40, max_depth=3, learning_rate=0.2
    )
    state = run_rounds(policy, dealt(policy, x[~test], y[~test], 4)).state
    ours = policy.evaluate(state, binned(policy, x[test]), y[test])
    assert ours is not None
    reference = HistGradientBoostingClassifier(
        max_iter=40,
        max_depth=3,
        learning_rate=0.2,
        max_bins=32,
        l2_regularization=1.0,
        min_samples_leaf=1,
        early_stopping=False,
        random_state=0,
    ).fit(x[~test], y[~test])
    theirs = float((reference.predict(x[test]) == y[test]).mean())
    assert ours.metrics["accuracy"] >= theirs - 0.03


def test_bins_a_node_has_no_rows_in_do_not_move_a_threshold() -> None:
    # With one bin per distinct value, deep nodes hold many empty bins, so thresholds
    # tie; the sums' rounding (another shard count, a derived sibling) must not pick.
    x, y = load_diabetes(return_X_y=True)
    objective = objective_for("regression", 0)
    policy = BoostedTreesPolicy(
        edges=tuple(bin_edges(x[:, j], 255) for j in range(x.shape[1])),
        objective=objective,
        base_score=tuple(objective.base_score(y).tolist()),
        n_trees=40,
        max_depth=4,
        learning_rate=0.1,
    )
    one = run_rounds(policy, dealt(policy, x, y, 1)).state
    for shards in (4, 8):
        assert_same_trees(run_rounds(policy, dealt(policy, x, y, shards)).state, one)


def test_row_subsampling_draws_by_global_row_so_shard_count_does_not_matter() -> None:
    x, y = classification(2, rows=800)
    policy = policy_for(x, y, "classification", 2, subsample=0.5, seed=3)
    parts = [np.array_split(np.arange(len(y)), shards) for shards in (1, 4, 8)]
    bins = binned(policy, x)
    states = [
        run_rounds(policy, [(bins[p], y[p]) for p in split], shard_rows=split).state
        for split in parts
    ]
    for other in states[1:]:
        assert_same_trees(other, states[0])
    whole = run_rounds(policy_for(x, y, "classification", 2), dealt(policy, x, y, 1)).state
    # Half the rows per tree grows other trees than all of them.
    assert not np.array_equal(ensemble_of(whole).value, ensemble_of(states[0]).value)


def test_row_uniforms_are_uniform_and_depend_on_seed_and_iteration() -> None:
    rows = np.arange(200_000)
    draws = row_uniforms(rows, seed=1, iteration=0)
    assert draws.min() >= 0 and draws.max() < 1
    assert abs(draws.mean() - 0.5) < 0.01
    assert abs((draws < 0.3).mean() - 0.3) < 0.01
    np.testing.assert_array_equal(draws[1000:2000], row_uniforms(rows[1000:2000], 1, 0))
    assert np.corrcoef(draws, row_uniforms(rows, seed=2, iteration=0))[0, 1] < 0.01
    assert np.corrcoef(draws, row_uniforms(rows, seed=1, iteration=1))[0, 1] < 0.01


def test_subsampling_without_row_indices_is_refused() -> None:
    x, y = problem(rows=100)
    policy = policy_for(x, y, "regression", subsample=0.5)
    with pytest.raises(ValueError, match="global index"):
        run_rounds(policy, dealt(policy, x, y, 2))


def test_a_round_missing_a_shard_is_not_merged() -> None:
    x, y = problem(rows=200)
    policy = policy_for(x, y, "regression", shards=3)
    shards = dealt(policy, x, y, 3)
    state = policy.initial_state()
    results = [
        policy.train_shard(1, s, state, fx, fy, device=None)  # type: ignore[arg-type]
        for s, (fx, fy) in enumerate(shards)
    ]
    with pytest.raises(IncompleteRoundError, match=r"shard\(s\) \[1\]"):
        policy.aggregate(1, state, [results[0], results[2]])
    assert policy.aggregate(1, state, results).state


def test_scores_kept_between_rounds_are_the_floats_scoring_from_scratch_gives() -> None:
    x, y = classification(3, rows=500)
    policy = policy_for(x, y, "classification", 3, n_trees=6)
    bins = binned(policy, x)
    seen: list[StateDict] = []
    run_rounds(policy, dealt(policy, x, y, 1), on_round=lambda _r, state: seen.append(state))
    for state in seen:
        ensemble = ensemble_of(state)
        kept = scores_of(ensemble, bins)
        assert kept.tobytes() == ensemble.predict_binned(bins).tobytes()
    # Another job's trees over the same rows share no prefix: scored from scratch.
    other = ensemble_of(
        run_rounds(
            policy_for(x, y, "classification", 3, seed=9, colsample=0.5), dealt(policy, x, y, 1)
        ).state
    )
    assert scores_of(other, bins).tobytes() == other.predict_binned(bins).tobytes()
