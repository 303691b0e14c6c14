import math

import pytest
import torch

from app.merge import (
    STRATEGIES,
    MergeOutcome,
    NoUsableResultsError,
    StateDict,
    fedavg,
    is_finite,
    mean,
    median,
    merge_results,
    trimmed_mean,
)


def shard(weight: list[float], bias: float, dtype: torch.dtype = torch.float32) -> StateDict:
    return {
        "linear.weight": torch.tensor([weight], dtype=dtype),
        "linear.bias": torch.tensor([bias], dtype=dtype),
    }


def scalar_shards(*values: float) -> list[tuple[StateDict, int]]:
    return [({"w": torch.tensor([value], dtype=torch.float64)}, 1) for value in values]


def test_fedavg_weights_by_example_count() -> None:
    results = [
        (shard([1.0, 2.0], 0.5), 10),
        (shard([3.0, -2.0], 1.5), 30),
        (shard([5.0, 0.0], -1.0), 60),
    ]

    merged = fedavg(results)

    # (10*1 + 30*3 + 60*5) / 100 = 4.0, (10*2 - 30*2 + 0) / 100 = -0.4,
    # (10*0.5 + 30*1.5 - 60*1) / 100 = -0.1
    torch.testing.assert_close(merged["linear.weight"], torch.tensor([[4.0, -0.4]]))
    torch.testing.assert_close(merged["linear.bias"], torch.tensor([-0.1]))
    assert list(merged) == ["linear.weight", "linear.bias"]


def test_fedavg_with_equal_counts_equals_mean() -> None:
    results = [(shard([1.0, 4.0], 2.0), 7), (shard([3.0, 0.0], 0.0), 7)]

    torch.testing.assert_close(fedavg(results)["linear.weight"], torch.tensor([[2.0, 2.0]]))
    torch.testing.assert_close(mean(results)["linear.weight"], torch.tensor([[2.0, 2.0]]))


def test_fedavg_rejects_zero_total_and_negative_counts() -> None:
    with pytest.raises(ValueError, match="at least one"):
        fedavg([(shard([1.0, 1.0], 1.0), 0)])
    with pytest.raises(ValueError, match="negative"):
        fedavg([(shard([1.0, 1.0], 1.0), 5), (shard([1.0, 1.0], 1.0), -1)])


def test_fedavg_sums_in_float64() -> None:
    # In float32, 1 + 1e-8 rounds to 1, so a float32 accumulator would return
    # exactly 1.0 here; the float64 one keeps the small shard's contribution.
    big = {"w": torch.tensor([1.0], dtype=torch.float64)}
    small = {"w": torch.tensor([1.0 + 1e-8], dtype=torch.float64)}

    merged = fedavg([(big, 1), (small, 1)])

    assert merged["w"].item() == pytest.approx(1.0 + 5e-9, abs=1e-15)


def test_mean_ignores_example_counts() -> None:
    results = [(shard([0.0, 3.0], 1.0), 1), (shard([6.0, 0.0], 2.0), 1000)]

    merged = mean(results)

    torch.testing.assert_close(merged["linear.weight"], torch.tensor([[3.0, 1.5]]))
    torch.testing.assert_close(merged["linear.bias"], torch.tensor([1.5]))


def test_median_odd_count_is_middle_value() -> None:
    merged = median(scalar_shards(5.0, -3.0, 100.0))

    assert merged["w"].tolist() == [5.0]


def test_median_even_count_averages_the_two_middles() -> None:
    # torch.median would return the lower middle, 2.0.
    merged = median(scalar_shards(10.0, 2.0, -7.0, 4.0))

    assert merged["w"].tolist() == [3.0]


def test_median_is_coordinate_wise() -> None:
    results = [
        (shard([1.0, 30.0], 0.0), 1),
        (shard([2.0, 10.0], 9.0), 1),
        (shard([3.0, 20.0], 3.0), 1),
    ]

    merged = median(results)

    torch.testing.assert_close(merged["linear.weight"], torch.tensor([[2.0, 20.0]]))
    torch.testing.assert_close(merged["linear.bias"], torch.tensor([3.0]))


def test_trimmed_mean_drops_outliers_on_both_sides() -> None:
    results = scalar_shards(1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 1e6, -1e6)

    # floor(0.1 * 10) = 1 value dropped from each end: the two outliers.
    merged = trimmed_mean(results, trim_fraction=0.1)

    assert merged["w"].item() == pytest.approx(4.5)


def test_trimmed_mean_trims_nothing_when_fraction_floors_to_zero() -> None:
    results = scalar_shards(1.0, 2.0, 9.0)

    # floor(0.2 * 3) = 0, so this is the plain mean.
    merged = trimmed_mean(results, trim_fraction=0.2)

    assert merged["w"].item() == pytest.approx(4.0)


@pytest.mark.parametrize("fraction", [-0.1, 0.5, 0.9, math.nan])
def test_trimmed_mean_rejects_fraction_outside_range(fraction: float) -> None:
    with pytest.raises(ValueError, match="trim_fraction"):
        trimmed_mean(scalar_shards(1.0, 2.0), trim_fraction=fraction)


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_strategy_preserves_dtype(strategy: str) -> None:
    results = [
        (
            {
                "half": torch.tensor([1.0, 2.0], dtype=torch.float16),
                "double": torch.tensor([1.0], dtype=torch.float64),
                "steps": torch.tensor(3, dtype=torch.int64),
            },
            2,
        ),
        (
            {
                "half": torch.tensor([3.0, 4.0], dtype=torch.float16),
                "double": torch.tensor([2.0], dtype=torch.float64),
                "steps": torch.tensor(4, dtype=torch.int64),
            },
            2,
        ),
    ]

    merged = merge_results(strategy, results).state

    assert merged["half"].dtype == torch.float16
    assert merged["double"].dtype == torch.float64
    assert merged["steps"].dtype == torch.int64
    assert merged["steps"].shape == torch.Size([])
    torch.testing.assert_close(merged["half"], torch.tensor([2.0, 3.0], dtype=torch.float16))


def test_integer_buffers_are_rounded_not_truncated() -> None:
    results = [({"steps": torch.tensor([3, 4])}, 1), ({"steps": torch.tensor([6, 4])}, 2)]

    # Weighted means 5.0 and 4.0; unweighted 4.5 rounds half to even, 4.0.
    assert fedavg(results)["steps"].tolist() == [5, 4]
    assert mean(results)["steps"].tolist() == [4, 4]


@pytest.mark.parametrize("aggregate", [fedavg, mean, median])
def test_empty_results_raise(aggregate) -> None:
    with pytest.raises(ValueError, match="empty"):
        aggregate([])


def test_missing_key_is_named() -> None:
    first = shard([1.0, 2.0], 0.0)
    second = {"linear.weight": torch.zeros(1, 2)}

    with pytest.raises(ValueError, match=r"state dict 1 lacks key 'linear\.bias'"):
        fedavg([(first, 1), (second, 1)])


def test_extra_key_is_named() -> None:
    first = shard([1.0, 2.0], 0.0)
    second = {**shard([1.0, 2.0], 0.0), "extra.scale": torch.ones(1)}

    with pytest.raises(ValueError, match=r"'extra\.scale'"):
        median([(first, 1), (second, 1)])


def test_shape_mismatch_is_named() -> None:
    first = shard([1.0, 2.0], 0.0)
    second = {"linear.weight": torch.zeros(2, 1), "linear.bias": torch.zeros(1)}

    with pytest.raises(ValueError, match=r"'linear\.weight' has shape \(2, 1\)"):
        trimmed_mean([(first, 1), (second, 1)], trim_fraction=0.0)


def test_is_finite() -> None:
    assert is_finite(shard([1.0, 2.0], 0.0))
    assert not is_finite(shard([1.0, math.nan], 0.0))
    assert not is_finite(shard([1.0, 2.0], -math.inf))
    assert is_finite({"steps": torch.tensor([1, 2])})


def test_merge_excludes_non_finite_and_empty_shards() -> None:
    results = [
        (shard([1.0, 1.0], 1.0), 10),
        (shard([math.nan, 1.0], 1.0), 10),
        (shard([3.0, 3.0], 3.0), 30),
        (shard([1.0, 1.0], math.inf), 10),
        (shard([100.0, 100.0], 100.0), 0),
    ]

    outcome = merge_results("fedavg", results)

    assert isinstance(outcome, MergeOutcome)
    assert outcome.used == [0, 2]
    assert outcome.excluded == [1, 3, 4]
    # (10*1 + 30*3) / 40 = 2.5
    torch.testing.assert_close(outcome.state["linear.weight"], torch.tensor([[2.5, 2.5]]))
    assert is_finite(outcome.state)


def test_merge_names_mismatched_shard_by_its_input_index() -> None:
    results = [
        (shard([math.nan, 1.0], 1.0), 10),
        (shard([1.0, 1.0], 1.0), 10),
        ({"linear.weight": torch.zeros(1, 2)}, 10),
    ]

    with pytest.raises(ValueError, match=r"state dict 2 lacks key 'linear\.bias'"):
        merge_results("fedavg", results)


def test_merge_with_every_shard_diverged_raises() -> None:
    results = [(shard([math.nan, 1.0], 1.0), 10), (shard([1.0, 1.0], math.inf), 10)]

    with pytest.raises(NoUsableResultsError):
        merge_results("mean", results)
    assert issubclass(NoUsableResultsError, ValueError)


def test_merge_with_no_results_raises() -> None:
    with pytest.raises(NoUsableResultsError):
        merge_results("fedavg", [])


def test_merge_rejects_unknown_strategy() -> None:
    with pytest.raises(ValueError, match="krum"):
        merge_results("krum", scalar_shards(1.0))


def test_merge_rejects_bad_trim_fraction_before_filtering() -> None:
    results = [(shard([math.nan, 1.0], 1.0), 10)]

    with pytest.raises(ValueError, match="trim_fraction") as raised:
        merge_results("trimmed_mean", results, trim_fraction=0.5)
    assert not isinstance(raised.value, NoUsableResultsError)


def test_merge_passes_trim_fraction_to_trimmed_mean() -> None:
    results = scalar_shards(-50.0, 1.0, 2.0, 3.0, 50.0)

    trimmed = merge_results("trimmed_mean", results, trim_fraction=0.2)
    untrimmed = merge_results("trimmed_mean", results, trim_fraction=0.0)

    assert trimmed.state["w"].item() == pytest.approx(2.0)
    assert untrimmed.state["w"].item() == pytest.approx(1.2)


def test_strategies_registry_names() -> None:
    assert set(STRATEGIES) == {"fedavg", "mean", "median", "trimmed_mean"}


def test_inputs_are_not_modified() -> None:
    results = [(shard([1.0, 2.0], 3.0), 1), (shard([5.0, 6.0], 7.0), 3)]
    before = [{key: tensor.clone() for key, tensor in state.items()} for state, _ in results]

    for name in STRATEGIES:
        merge_results(name, results)

    for (state, _), original in zip(results, before, strict=True):
        for key, tensor in state.items():
            assert torch.equal(tensor, original[key])


def test_merge_matches_random_reference() -> None:
    generator = torch.Generator().manual_seed(0)
    states = [
        {"a": torch.randn(4, 3, generator=generator), "b": torch.randn(5, generator=generator)}
        for _ in range(7)
    ]
    counts = [3, 1, 4, 1, 5, 9, 2]
    results = list(zip(states, counts, strict=True))

    for key in ("a", "b"):
        stacked = torch.stack([state[key].double() for state in states])
        weights = torch.tensor(counts, dtype=torch.float64).reshape(-1, *[1] * (stacked.dim() - 1))
        torch.testing.assert_close(
            fedavg(results)[key], ((stacked * weights).sum(0) / sum(counts)).float()
        )
        torch.testing.assert_close(median(results)[key], stacked.median(dim=0).values.float())
        ordered = stacked.sort(dim=0).values
        torch.testing.assert_close(
            trimmed_mean(results, trim_fraction=0.3)[key], ordered[2:5].mean(0).float()
        )
