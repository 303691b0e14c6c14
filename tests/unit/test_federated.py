import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from app.training.federated import FederatedResult, fit_federated
from app.training.loop import (
    TrainConfig,
    _LossSum,
    _sorted_batches,
    evaluate,
    train_local,
)
from app.training.networks import NetworkConfig, initial_state
from app.training.parametric import shard_seed
from app.training.protocol import StateDict

CPU = torch.device("cpu")


def blobs(
    n_rows: int, *, n_features: int = 5, n_classes: int = 3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian clusters around well separated centres: a linear model fits them."""
    rng = np.random.default_rng(seed)
    centres = 3.0 * rng.standard_normal((n_classes, n_features))
    labels = rng.integers(0, n_classes, n_rows)
    x = centres[labels] + rng.standard_normal((n_rows, n_features))
    return x.astype(np.float32), labels.astype(np.float32)


def split(x: np.ndarray, y: np.ndarray, n_shards: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return list(zip(np.array_split(x, n_shards), np.array_split(y, n_shards), strict=True))


def same(a: StateDict, b: StateDict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


CLASSIFIER = NetworkConfig("logistic_regression", n_features=5, n_outputs=3)
MLP = NetworkConfig("mlp", n_features=5, n_outputs=3, hidden_layers=[16], dropout=0.2)
ADAM = TrainConfig(task="classification", optimizer="adam", learning_rate=0.05, batch_size=32)


def test_shard_seed_differs_per_round_and_shard() -> None:
    assert shard_seed(7, 3, 2) == shard_seed(7, 3, 2)
    assert len({shard_seed(0, r, s) for r in range(1, 4) for s in range(4)}) == 12


@pytest.mark.parametrize("aggregation", ["fedavg", "mean", "median", "trimmed_mean"])
def test_fit_federated_is_bit_identical_for_a_seed(aggregation: str) -> None:
    x, y = blobs(400)
    shards = split(x, y, 4)
    first = fit_federated(MLP, shards, ADAM, rounds=3, seed=5, aggregation=aggregation)
    again = fit_federated(MLP, shards, ADAM, rounds=3, seed=5, aggregation=aggregation)
    other = fit_federated(MLP, shards, ADAM, rounds=3, seed=6, aggregation=aggregation)
    assert same(first.state, again.state)
    assert first.train_losses == again.train_losses
    assert not same(first.state, other.state)
    assert first.rounds_run == 3


def test_one_shard_one_round_is_one_train_local() -> None:
    x, y = blobs(300)
    result = fit_federated(MLP, [(x, y)], ADAM, rounds=1, seed=9)
    direct = train_local(
        MLP, initial_state(MLP, 9), x, y, ADAM, seed=shard_seed(9, 1, 0), device=CPU
    )
    assert same(result.state, direct.state)
    assert result.train_losses == [direct.loss]


def test_rounds_chain_through_the_merged_state() -> None:
    # Two rounds on one shard equal two train_local calls, the second from the first's output.
    x, y = blobs(200, seed=1)
    result = fit_federated(CLASSIFIER, [(x, y)], ADAM, rounds=2, seed=4)
    state = initial_state(CLASSIFIER, 4)
    for round_ in (1, 2):
        state = train_local(
            CLASSIFIER, state, x, y, ADAM, seed=shard_seed(4, round_, 0), device=CPU
        ).state
    assert same(result.state, state)


def test_fedavg_of_four_shards_reaches_good_accuracy() -> None:
    x, y = blobs(4000, seed=2)
    train_x, train_y, hold_x, hold_y = x[:3200], y[:3200], x[3200:], y[3200:]
    result = fit_federated(
        CLASSIFIER,
        split(train_x, train_y, 4),
        ADAM,
        rounds=5,
        seed=0,
        validation=(hold_x, hold_y),
    )
    evaluation = evaluate(CLASSIFIER, result.state, hold_x, hold_y, "classification")
    assert evaluation is not None
    assert evaluation.metrics["accuracy"] >= 0.95
    assert len(result.history) == 5
    assert result.history[-1] == pytest.approx(evaluation.loss)
    assert result.history[-1] < result.history[0] < np.log(3)


def test_full_batch_sgd_fedavg_is_gradient_descent_on_the_union() -> None:
    # One plain SGD step per shard, averaged by example count, is one
    # full-batch step on all rows: the shard count does not matter.
    x, y = blobs(600, seed=3)
    gd = TrainConfig(
        task="classification", optimizer="sgd", learning_rate=0.5, batch_size=10_000, l2=0.01
    )
    one = fit_federated(CLASSIFIER, [(x, y)], gd, rounds=20, seed=0)
    # Uneven shards (151, 150, 150, 149 rows) exercise the example-count weights.
    four = fit_federated(CLASSIFIER, split(x, y, 4), gd, rounds=20, seed=0)
    for key in one.state:
        torch.testing.assert_close(four.state[key], one.state[key], rtol=1e-4, atol=1e-5)


def test_linear_regression_recovers_the_weights_across_shards() -> None:
    rng = np.random.default_rng(4)
    true_w = np.array([1.5, -2.0, 0.5])
    x = rng.standard_normal((1200, 3)).astype(np.float32)
    y = (x @ true_w + 0.7 + 0.05 * rng.standard_normal(1200)).astype(np.float32)
    config = NetworkConfig("linear_regression", n_features=3, n_outputs=1)
    train = TrainConfig(task="regression", optimizer="sgd", learning_rate=0.05, batch_size=32)
    result = fit_federated(config, split(x, y, 3), train, rounds=4, seed=1, validation=(x, y))
    np.testing.assert_allclose(result.state["0.weight"].numpy()[0], true_w, atol=0.02)
    assert result.state["0.bias"].item() == pytest.approx(0.7, abs=0.02)
    assert result.history[-1] < 0.01  # mean squared error in training units


def test_zero_rounds_return_the_initial_state() -> None:
    x, y = blobs(50)
    result = fit_federated(MLP, [(x, y)], ADAM, rounds=0, seed=3)
    assert same(result.state, initial_state(MLP, 3))
    assert result == FederatedResult(state=result.state, rounds_run=0)


def test_on_round_sees_every_merged_state_in_order() -> None:
    x, y = blobs(200)
    seen: list[tuple[int, StateDict]] = []
    result = fit_federated(
        CLASSIFIER,
        split(x, y, 2),
        ADAM,
        rounds=3,
        seed=0,
        on_round=lambda r, s: seen.append((r, s)),
    )
    assert [r for r, _ in seen] == [1, 2, 3]
    assert same(seen[-1][1], result.state)
    assert not same(seen[0][1], seen[-1][1])


def test_bad_arguments_are_refused() -> None:
    x, y = blobs(40)
    with pytest.raises(ValueError, match="at least one shard"):
        fit_federated(CLASSIFIER, [], ADAM, rounds=1, seed=0)
    with pytest.raises(ValueError, match="rounds"):
        fit_federated(CLASSIFIER, [(x, y)], ADAM, rounds=-1, seed=0)
    with pytest.raises(ValueError, match="unknown merge strategy"):
        fit_federated(CLASSIFIER, [(x, y)], ADAM, rounds=1, seed=0, aggregation="max")


# --- train_local's input paths (the shard gather in app/training/loop.py) ---------


def test_train_local_gives_the_same_bits_on_a_memory_map(tmp_path: Path) -> None:
    # Workers read shards as a read-only memory-mapped .npy of [features, target].
    x, y = blobs(333, seed=5)
    path = tmp_path / "shard.npy"
    np.save(path, np.column_stack([x, y]))
    mapped = np.load(path, mmap_mode="r")
    start = initial_state(MLP, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "array is not writable" warning leaks out
        from_map = train_local(MLP, start, mapped[:, :-1], mapped[:, -1], ADAM, seed=3, device=CPU)
    in_memory = train_local(MLP, start, x, y, ADAM, seed=3, device=CPU)
    assert same(from_map.state, in_memory.state)
    assert from_map.loss == in_memory.loss


def test_train_local_accepts_arrays_torch_cannot_view() -> None:
    x, y = blobs(100, seed=6)
    reversed_x, reversed_y = x[::-1], y[::-1]  # negative strides
    start = initial_state(CLASSIFIER, 0)
    viewed = train_local(CLASSIFIER, start, reversed_x, reversed_y, ADAM, seed=1, device=CPU)
    copied = train_local(
        CLASSIFIER,
        start,
        np.ascontiguousarray(reversed_x),
        np.ascontiguousarray(reversed_y),
        ADAM,
        seed=1,
        device=CPU,
    )
    assert same(viewed.state, copied.state)


def test_sorted_batches_sorts_each_batch_and_keeps_the_batches() -> None:
    order = torch.randperm(1000, generator=torch.Generator().manual_seed(0))
    result = _sorted_batches(order, 64)
    assert result.dtype == order.dtype
    for start in range(0, 1000, 64):
        expected = torch.sort(order[start : start + 64]).values
        assert torch.equal(result[start : start + 64], expected)
    assert len(_sorted_batches(order[:0], 64)) == 0


def test_train_local_reports_the_loss_across_many_folds() -> None:
    # More batches than one fold of pending losses holds.
    x, y = blobs(_LossSum.FOLD_EVERY + 37, seed=7)
    train = TrainConfig(task="classification", optimizer="sgd", learning_rate=0.0, batch_size=1)
    start = initial_state(CLASSIFIER, 0)
    result = train_local(CLASSIFIER, start, x, y, train, seed=0, device=CPU)
    # Zero weights and a zero learning rate: every example's loss is ln 3.
    assert result.loss == pytest.approx(np.log(3), rel=1e-6)
    assert result.num_examples == len(y)
