import numpy as np
import pytest
from sklearn import metrics as skm

from app.training.metrics import HIGHER_IS_BETTER, classification_metrics, regression_metrics


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


@pytest.mark.parametrize(("seed", "classes", "rows"), [(0, 3, 200), (1, 5, 57), (2, 4, 1000)])
def test_multiclass_metrics_match_sklearn(seed: int, classes: int, rows: int) -> None:
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, classes, size=rows)
    proba = softmax(rng.normal(size=(rows, classes)) + 2.0 * np.eye(classes)[y_true])
    y_pred = proba.argmax(axis=1)

    result = classification_metrics(y_true, proba)

    assert set(result) == {"accuracy", "log_loss", "f1_macro"}
    np.testing.assert_allclose(result["accuracy"], skm.accuracy_score(y_true, y_pred))
    np.testing.assert_allclose(
        result["log_loss"], skm.log_loss(y_true, proba, labels=list(range(classes)))
    )
    np.testing.assert_allclose(
        result["f1_macro"], skm.f1_score(y_true, y_pred, average="macro", zero_division=0)
    )


def test_f1_macro_counts_classes_only_predicted_or_only_true() -> None:
    # Class 3 is never true and class 1 is never predicted; class 2 appears
    # in neither and must not drag the average down.
    y_true = np.array([0, 0, 1, 1, 0, 4, 4])
    y_pred = np.array([0, 3, 0, 0, 0, 4, 3])
    proba = np.full((y_true.size, 5), 0.05)
    proba[np.arange(y_true.size), y_pred] = 0.8

    result = classification_metrics(y_true, proba)

    np.testing.assert_allclose(
        result["f1_macro"], skm.f1_score(y_true, y_pred, average="macro", zero_division=0)
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_metrics_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 2, size=300)
    positive = 1.0 / (1.0 + np.exp(-(rng.normal(size=300) + 1.5 * (2 * y_true - 1))))
    proba = np.column_stack([1.0 - positive, positive])

    result = classification_metrics(y_true, proba)

    np.testing.assert_allclose(result["accuracy"], skm.accuracy_score(y_true, proba.argmax(1)))
    np.testing.assert_allclose(result["log_loss"], skm.log_loss(y_true, proba))
    np.testing.assert_allclose(
        result["f1_macro"], skm.f1_score(y_true, proba.argmax(1), average="macro")
    )
    np.testing.assert_allclose(result["roc_auc"], skm.roc_auc_score(y_true, positive))


def test_roc_auc_with_tied_scores_matches_sklearn() -> None:
    rng = np.random.default_rng(7)
    y_true = rng.integers(0, 2, size=400)
    # Only five distinct scores, so almost every positive/negative pair is
    # either tied or decided by a shared rank.
    noisy = np.clip(0.5 + 0.3 * (y_true - 0.5) + rng.normal(0, 0.2, 400), 0, 1)
    positive = np.round(noisy * 4) / 4
    proba = np.column_stack([1.0 - positive, positive])

    result = classification_metrics(y_true, proba)

    assert np.unique(positive).size <= 5
    np.testing.assert_allclose(result["roc_auc"], skm.roc_auc_score(y_true, positive))


def test_roc_auc_all_tied_is_one_half() -> None:
    y_true = np.array([0, 1, 0, 1, 1])
    proba = np.full((5, 2), 0.5)

    assert classification_metrics(y_true, proba)["roc_auc"] == pytest.approx(0.5)


def test_roc_auc_absent_when_one_class_or_multiclass() -> None:
    one_class = classification_metrics(np.array([1, 1, 1]), np.array([[0.2, 0.8]] * 3))
    multiclass = classification_metrics(np.array([0, 1, 2]), np.eye(3))

    assert "roc_auc" not in one_class
    assert "roc_auc" not in multiclass


def test_log_loss_clips_zero_probability() -> None:
    y_true = np.array([0, 1])
    proba = np.array([[0.0, 1.0], [0.0, 1.0]])

    result = classification_metrics(y_true, proba)

    np.testing.assert_allclose(result["log_loss"], -np.log(1e-15) / 2)
    assert np.isfinite(result["log_loss"])


def test_classification_metrics_are_python_floats() -> None:
    result = classification_metrics(
        np.array([0, 1, 1]), np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7]])
    )

    assert all(type(value) is float for value in result.values())


@pytest.mark.parametrize(
    ("y_true", "proba", "message"),
    [
        (np.array([0, 1]), np.array([0.3, 0.7]), "shape"),
        (np.array([0, 1]), np.array([[1.0], [1.0]]), "k >= 2"),
        (np.array([0, 1, 1]), np.array([[0.5, 0.5]] * 2), "y_true must have shape"),
        (np.array([0, 2]), np.array([[0.5, 0.5]] * 2), "outside"),
        (np.array([0.0, 1.0]), np.array([[0.5, 0.5]] * 2), "integer"),
        (np.array([], dtype=int), np.zeros((0, 2)), "empty"),
    ],
)
def test_classification_metrics_reject_bad_input(
    y_true: np.ndarray, proba: np.ndarray, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        classification_metrics(y_true, proba)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_regression_metrics_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y_true = rng.normal(3.0, 2.0, size=500)
    y_pred = y_true + rng.normal(0.0, 0.7, size=500)

    result = regression_metrics(y_true, y_pred)

    assert set(result) == {"rmse", "mae", "r2"}
    np.testing.assert_allclose(result["rmse"], np.sqrt(skm.mean_squared_error(y_true, y_pred)))
    np.testing.assert_allclose(result["mae"], skm.mean_absolute_error(y_true, y_pred))
    np.testing.assert_allclose(result["r2"], skm.r2_score(y_true, y_pred))
    assert all(type(value) is float for value in result.values())


def test_regression_metrics_accept_column_vectors() -> None:
    y_true = np.array([1.0, 2.0, 4.0])
    y_pred = np.array([[1.5], [2.0], [3.0]])

    result = regression_metrics(y_true.reshape(-1, 1), y_pred)

    np.testing.assert_allclose(result["r2"], skm.r2_score(y_true, y_pred.ravel()))
    np.testing.assert_allclose(result["mae"], 0.5)


@pytest.mark.parametrize(("y_pred", "expected"), [([2.0, 2.0, 2.0], 1.0), ([2.0, 2.5, 2.0], 0.0)])
def test_r2_with_constant_target_follows_sklearn(y_pred: list[float], expected: float) -> None:
    y_true = np.array([2.0, 2.0, 2.0])

    result = regression_metrics(y_true, np.array(y_pred))

    assert result["r2"] == expected
    assert result["r2"] == skm.r2_score(y_true, y_pred)


def test_r2_can_be_negative() -> None:
    y_true = np.array([1.0, 2.0, 3.0])
    y_pred = np.array([3.0, 2.0, 1.0])

    np.testing.assert_allclose(regression_metrics(y_true, y_pred)["r2"], -3.0)


def test_regression_metrics_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="3 values"):
        regression_metrics(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="shape"):
        regression_metrics(np.zeros((3, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="empty"):
        regression_metrics(np.zeros(0), np.zeros(0))


def test_higher_is_better_covers_every_metric() -> None:
    binary = classification_metrics(np.array([0, 1]), np.array([[0.8, 0.2], [0.3, 0.7]]))
    regression = regression_metrics(np.array([1.0, 2.0]), np.array([1.0, 2.5]))

    assert set(HIGHER_IS_BETTER) == set(binary) | set(regression)
    assert not HIGHER_IS_BETTER["log_loss"]
    assert not HIGHER_IS_BETTER["rmse"]
    assert not HIGHER_IS_BETTER["mae"]
    assert HIGHER_IS_BETTER["accuracy"]
    assert HIGHER_IS_BETTER["f1_macro"]
    assert HIGHER_IS_BETTER["roc_auc"]
    assert HIGHER_IS_BETTER["r2"]
