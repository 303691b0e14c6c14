import json
from collections.abc import Sequence

import numpy as np
import pytest

from app.training.preprocessing import PreprocessingFitter, Preprocessor


def fitter(
    columns: Sequence[tuple[str, str]] = (("x", "float64"),),
    *,
    target: tuple[str, str] = ("y", "float64"),
    task: str = "regression",
    standardize: bool = True,
    impute: str = "mean",
) -> PreprocessingFitter:
    return PreprocessingFitter(
        columns=list(columns),
        target=target,
        task=task,
        standardize=standardize,
        impute=impute,
        seed=0,
    )


def fit_numeric(
    batches: Sequence[np.ndarray], *, standardize: bool = True, impute: str = "mean"
) -> Preprocessor:
    f = fitter(standardize=standardize, impute=impute)
    for batch in batches:
        f.update({"x": batch}, np.zeros(len(batch)))
    return f.finish()


def strings(*values: str | None) -> np.ndarray:
    return np.array(values, dtype=object)


# --- numeric statistics -------------------------------------------------------


def test_batched_mean_and_std_match_numpy_on_the_concatenation() -> None:
    rng = np.random.default_rng(0)
    # Uneven batch sizes and far-apart means exercise the cross term of Chan's update.
    batches = [
        rng.normal(1e4, 3.0, 1),
        rng.normal(-50.0, 10.0, 777),
        rng.normal(3.0, 0.5, 31),
        rng.normal(1e4, 100.0, 2048),
    ]
    pre = fit_numeric(batches)
    everything = np.concatenate(batches)
    (feature,) = pre.numeric
    assert feature.mean == pytest.approx(everything.mean(), rel=1e-12)
    assert feature.std == pytest.approx(everything.std(), rel=1e-10)


def test_batched_statistics_ignore_nan_and_empty_batches() -> None:
    batches = [
        np.array([1.0, np.nan, 3.0]),
        np.array([np.nan, np.nan]),
        np.array([]),
        np.array([10.0, 20.0, np.nan]),
    ]
    pre = fit_numeric(batches)
    present = np.array([1.0, 3.0, 10.0, 20.0])
    (feature,) = pre.numeric
    assert feature.mean == pytest.approx(present.mean(), rel=1e-12)
    assert feature.std == pytest.approx(present.std(), rel=1e-12)


def test_one_batch_and_many_batches_agree() -> None:
    values = np.random.default_rng(1).exponential(5.0, 5000)
    whole = fit_numeric([values]).numeric[0]
    pieces = fit_numeric(np.array_split(values, 17)).numeric[0]
    assert pieces.mean == pytest.approx(whole.mean, rel=1e-12)
    assert pieces.std == pytest.approx(whole.std, rel=1e-12)


@pytest.mark.parametrize("n_values", [1001, 1000])
def test_median_imputation_equals_numpy_median_below_the_sample_size(n_values: int) -> None:
    values = np.random.default_rng(2).lognormal(0.0, 1.0, n_values)
    pre = fit_numeric(np.array_split(values, 3), impute="median")
    fill = pre.numeric[0].fill
    assert fill == np.median(values)
    # The mean of a skewed sample is far from its median: the test tells them apart.
    assert abs(fill - values.mean()) > 0.1


def test_median_over_the_sample_size_stays_close_to_the_true_median() -> None:
    # Batches arrive in increasing order: a sample biased to early or late batches would show.
    values = np.random.default_rng(3).uniform(0.0, 1.0, 150_000)
    values.sort()
    pre = fit_numeric(np.array_split(values, 6), impute="median")
    assert pre.numeric[0].fill == pytest.approx(np.median(values), abs=0.01)


def test_most_frequent_imputation() -> None:
    batches = [np.array([1.0, 2.0, 7.0, np.nan]), np.array([7.0, 3.0, 7.0, 2.0])]
    pre = fit_numeric(batches, impute="most_frequent")
    assert pre.numeric[0].fill == 7.0


def test_mean_imputation() -> None:
    pre = fit_numeric([np.array([1.0, np.nan, 5.0])], impute="mean")
    assert pre.numeric[0].fill == 3.0


def test_nan_is_imputed_with_the_fill_before_standardizing() -> None:
    values = np.array([1.0, 2.0, 3.0, 10.0])
    pre = fit_numeric([values], impute="median")
    out = pre.transform({"x": np.array([np.nan, 10.0])})
    median, mean, std = 2.5, values.mean(), values.std()
    assert out.dtype == np.float32
    assert not np.isnan(out).any()
    np.testing.assert_allclose(out[:, 0], [(median - mean) / std, (10.0 - mean) / std], rtol=1e-6)


def test_standardized_training_column_has_zero_mean_and_unit_std() -> None:
    values = np.random.default_rng(4).normal(40.0, 7.0, 3000)
    pre = fit_numeric(np.array_split(values, 5))
    out = pre.transform({"x": values})[:, 0]
    assert abs(out.mean()) < 1e-5
    assert out.std() == pytest.approx(1.0, abs=1e-5)


def test_standardize_false_leaves_values_unchanged() -> None:
    values = np.array([1.5, -2.0, 100.0, 7.25])
    pre = fit_numeric([values], standardize=False)
    assert pre.numeric[0].mean == 0.0
    assert pre.numeric[0].std == 1.0
    out = pre.transform({"x": values})
    np.testing.assert_array_equal(out[:, 0], values.astype(np.float32))


def test_standardize_false_still_imputes() -> None:
    pre = fit_numeric([np.array([1.0, 2.0, 6.0])], standardize=False, impute="mean")
    out = pre.transform({"x": np.array([np.nan, 4.0])})
    np.testing.assert_array_equal(out[:, 0], [3.0, 4.0])


def test_constant_column_gets_std_one_and_no_division_by_zero() -> None:
    pre = fit_numeric([np.full(10, 5.0), np.full(3, 5.0)])
    assert pre.numeric[0].std == 1.0
    assert pre.numeric[0].mean == 5.0
    with np.errstate(all="raise"):
        out = pre.transform({"x": np.array([5.0, 6.0, np.nan])})
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out[:, 0], [0.0, 1.0, 0.0])


def test_all_missing_numeric_column_is_finite() -> None:
    pre = fit_numeric([np.array([np.nan, np.nan])])
    out = pre.transform({"x": np.array([np.nan, 2.0])})
    assert np.isfinite(out).all()


# --- categorical features -------------------------------------------------------


def fit_categorical(*batches: np.ndarray) -> Preprocessor:
    f = fitter([("colour", "string")])
    for batch in batches:
        f.update({"colour": batch}, np.zeros(len(batch)))
    return f.finish()


def test_categories_are_sorted_and_fill_is_the_most_frequent() -> None:
    pre = fit_categorical(strings("red", "blue", None), strings("green", "blue", "blue"))
    (cat,) = pre.categorical
    assert cat.categories == ["blue", "green", "red"]
    assert cat.fill == "blue"
    assert pre.n_features == 3


def test_one_hot_encoding_of_seen_categories() -> None:
    pre = fit_categorical(strings("red", "blue", "green", "blue"))
    out = pre.transform({"colour": strings("green", "red", "blue")})
    np.testing.assert_array_equal(out, [[0, 1, 0], [0, 0, 1], [1, 0, 0]])


def test_unseen_category_gives_an_all_zero_block() -> None:
    pre = fit_categorical(strings("red", "blue", "green", "blue"))
    out = pre.transform({"colour": strings("purple", "red")})
    np.testing.assert_array_equal(out[0], [0, 0, 0])
    np.testing.assert_array_equal(out[1], [0, 0, 1])


def test_missing_category_is_imputed_with_the_most_frequent() -> None:
    pre = fit_categorical(strings("red", "green", "green", "blue", None))
    out = pre.transform({"colour": strings(None)})
    # "green" sorts between "blue" and "red".
    np.testing.assert_array_equal(out, [[0, 1, 0]])


def test_none_is_not_a_category() -> None:
    pre = fit_categorical(strings(None, None, None, "a"))
    assert pre.categorical[0].categories == ["a"]
    assert pre.categorical[0].fill == "a"


# --- targets --------------------------------------------------------------------


def test_classification_classes_are_sorted_and_unseen_labels_encode_minus_one() -> None:
    f = fitter(task="classification", target=("label", "string"))
    f.update({"x": np.zeros(3)}, strings("dog", "cat", "emu"))
    f.update({"x": np.zeros(2)}, strings("cat", "bird"))
    pre = f.finish()
    assert pre.target.classes == ["bird", "cat", "dog", "emu"]
    encoded = pre.encode_target(strings("emu", "bird", "cow", "cat"))
    assert encoded.dtype == np.float32
    np.testing.assert_array_equal(encoded, [3, 0, -1, 1])


def test_integer_classes_are_sorted_numerically() -> None:
    f = fitter(task="classification", target=("label", "int64"))
    f.update({"x": np.zeros(4)}, np.array([10, 2, 2, 33]))
    pre = f.finish()
    assert pre.target.classes == [2, 10, 33]
    np.testing.assert_array_equal(pre.encode_target(np.array([33, 2, 5])), [2, 0, -1])


def test_regression_target_is_standardized_and_decode_inverts_it() -> None:
    rng = np.random.default_rng(5)
    batches = [rng.normal(300.0, 25.0, n) for n in (10, 500, 91)]
    f = fitter(task="regression")
    for batch in batches:
        f.update({"x": np.zeros(len(batch))}, batch)
    pre = f.finish()
    y = np.concatenate(batches)
    assert pre.target.mean == pytest.approx(y.mean(), rel=1e-12)
    assert pre.target.std == pytest.approx(y.std(), rel=1e-10)
    encoded = pre.encode_target(y)
    assert encoded.dtype == np.float32
    assert abs(encoded.mean()) < 1e-4
    assert encoded.std() == pytest.approx(1.0, abs=1e-4)
    decoded = pre.decode_regression(encoded.astype(np.float64))
    np.testing.assert_allclose(decoded, y, rtol=1e-6)


def test_constant_regression_target_has_std_one() -> None:
    f = fitter(task="regression")
    f.update({"x": np.zeros(4)}, np.full(4, 9.0))
    pre = f.finish()
    assert pre.target.std == 1.0
    np.testing.assert_array_equal(pre.encode_target(np.array([9.0, 10.0])), [0.0, 1.0])


# --- the whole preprocessor -----------------------------------------------------

# Neither alphabetical nor numeric-first: the declared order must be kept as given.
MIXED_COLUMNS = [("income", "int64"), ("city", "string"), ("age", "float64"), ("tier", "string")]


def mixed_preprocessor() -> Preprocessor:
    f = fitter(MIXED_COLUMNS, task="classification", target=("churn", "bool"), impute="median")
    f.update(
        {
            "age": np.array([30.0, np.nan, 50.0, 41.0]),
            "city": strings("paris", "oslo", None, "paris"),
            "income": np.array([1000.0, 2000.0, 1500.0, 1200.0]),
            "tier": strings("gold", "silver", "silver", "bronze"),
        },
        np.array([True, False, True, False]),
    )
    f.update(
        {
            "age": np.array([22.0, 65.0]),
            "city": strings("lima", "oslo"),
            "income": np.array([np.nan, 4000.0]),
            "tier": strings("silver", None),
        },
        np.array([False, False]),
    )
    return f.finish()


def mixed_rows() -> dict[str, np.ndarray]:
    return {
        "age": np.array([np.nan, 33.0, 80.0]),
        "city": strings("oslo", "rome", None),
        "income": np.array([2500.0, np.nan, 100.0]),
        "tier": strings(None, "gold", "platinum"),
    }


def test_feature_schema_keeps_the_declared_column_order() -> None:
    pre = mixed_preprocessor()
    assert pre.feature_schema == [
        {"name": "income", "dtype": "int64"},
        {"name": "city", "dtype": "string"},
        {"name": "age", "dtype": "float64"},
        {"name": "tier", "dtype": "string"},
    ]


def test_transform_lays_out_blocks_in_column_order() -> None:
    pre = mixed_preprocessor()
    # income, city (lima, oslo, paris), age, tier (bronze, gold, silver)
    assert pre.n_features == 8
    out = pre.transform(mixed_rows())
    assert out.shape == (3, 8)
    # The missing city takes the most frequent one; paris and oslo tie, oslo sorts first.
    np.testing.assert_array_equal(out[:, 1:4], [[0, 1, 0], [0, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(out[:, 5:8], [[0, 0, 1], [0, 1, 0], [0, 0, 0]])
    income, age = pre.numeric
    assert (income.name, age.name) == ("income", "age")
    assert age.fill == 41.0  # the median of the five ages seen
    assert out[0, 4] == pytest.approx((age.fill - age.mean) / age.std, rel=1e-6)
    assert out[2, 0] == pytest.approx((100.0 - income.mean) / income.std, rel=1e-6)


def test_to_dict_from_dict_round_trip_gives_identical_transform() -> None:
    pre = mixed_preprocessor()
    restored = Preprocessor.from_dict(json.loads(json.dumps(pre.to_dict())))
    assert restored == pre
    rows = mixed_rows()
    np.testing.assert_array_equal(restored.transform(rows), pre.transform(rows))
    labels = np.array([True, False])
    np.testing.assert_array_equal(restored.encode_target(labels), pre.encode_target(labels))
    assert restored.feature_schema == pre.feature_schema


def test_round_trip_of_a_regression_preprocessor_keeps_target_scaling() -> None:
    f = fitter(task="regression", impute="median")
    f.update({"x": np.array([1.0, 4.0, np.nan])}, np.array([10.0, 20.0, 60.0]))
    pre = f.finish()
    restored = Preprocessor.from_dict(json.loads(json.dumps(pre.to_dict())))
    outputs = np.array([-1.0, 0.0, 2.0])
    np.testing.assert_array_equal(
        restored.decode_regression(outputs), pre.decode_regression(outputs)
    )
    x = {"x": np.array([np.nan, 3.0])}
    np.testing.assert_array_equal(restored.transform(x), pre.transform(x))


def test_categorical_fill_does_not_depend_on_batch_order() -> None:
    fills = []
    for order in (["b", "a", "a", "b"], ["a", "b", "b", "a"]):
        f = fitter([("c", "string")], task="classification", target=("y", "int"))
        f.update({"c": strings(*order)}, np.array([0, 1, 0, 1]))
        fills.append(f.finish().categorical[0].fill)
    assert fills == ["a", "a"]


def test_transform_into_a_part_block_equals_the_float64_formula() -> None:
    """Filling the feature columns of a wider block (as sharding does) gives what the
    formula gives in float64, rounded once, with missing values imputed and one-hot
    zeros written over whatever the block held."""
    f = fitter((("x", "float64"), ("c", "string"), ("z", "float64")))
    rng = np.random.default_rng(3)
    x, z = rng.normal(5.0, 2.0, 50), rng.normal(-1.0, 0.1, 50)
    c = strings(*rng.choice(["a", "b", "c"], 50))
    f.update({"x": x, "c": c, "z": z}, np.zeros(50))
    pre = f.finish()
    x_new = np.array([1.0, np.nan, 7.5])
    columns = {"x": x_new, "c": strings("b", None, "zzz"), "z": np.array([np.nan, 0.0, 2.0])}
    block = np.full((3, pre.n_features + 1), 9.0, dtype="<f4")
    pre.transform(columns, out=block[:, :-1])
    np.testing.assert_array_equal(block[:, :-1], pre.transform(columns))
    numeric = {n.name: n for n in pre.numeric}
    expected_x = (np.where(np.isnan(x_new), numeric["x"].fill, x_new) - numeric["x"].mean) / (
        numeric["x"].std
    )
    np.testing.assert_array_equal(block[:, 0], expected_x.astype(np.float32))
    categories = pre.categorical[0].categories
    assert categories == ["a", "b", "c"]
    one_hot = np.zeros((3, 3), dtype=np.float32)
    one_hot[0, 1] = 1.0  # "b"
    one_hot[1, categories.index(pre.categorical[0].fill)] = 1.0  # missing: the fill
    # "zzz" was never seen: its row stays all zero, not the 9.0 the block held
    np.testing.assert_array_equal(block[:, 1:4], one_hot)
    assert (block[:, -1] == 9.0).all()  # the target column is left alone
