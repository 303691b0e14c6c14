"""Holdout and validation metrics in plain numpy.

Workers score models here without scikit-learn, which the service does not ship
at runtime; each definition follows scikit-learn's defaults so that numbers a
user reproduces with it match the ones the API reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = [
    "HIGHER_IS_BETTER",
    "Scores",
    "classification_metrics",
    "regression_metrics",
    "score_classification",
    "score_regression",
]

# scikit-learn's long-standing default floor: a confident wrong answer costs
# about 34.5 nats instead of an infinite loss that no comparison can rank.
LOG_LOSS_FLOOR = 1e-15

# Which way each metric improves; the spec only accepts gate metrics listed here.
HIGHER_IS_BETTER: dict[str, bool] = {
    "accuracy": True,
    "log_loss": False,
    "f1_macro": True,
    "roc_auc": True,
    "rmse": False,
    "mae": False,
    "r2": True,
}


@dataclass(frozen=True)
class Scores:
    """Metrics that have a finite value, and for each one that has not, why.

    NaN and infinity are not scores: JSON cannot carry them, no gate can compare
    them, and a null with no reason hides a broken model behind a "succeeded".
    """

    values: dict[str, float]
    unavailable: dict[str, str] = field(default_factory=dict)


def score_regression(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> Scores:
    """`regression_metrics`, with a reason in place of each value that is not finite."""
    target = _as_vector("y_true", y_true)
    prediction = _as_vector("y_pred", y_pred)
    cause = _non_finite_cause(target, "the holdout targets") or _non_finite_cause(
        prediction, "the model's predictions"
    )
    with np.errstate(over="ignore", invalid="ignore"):
        metrics = regression_metrics(target, prediction)
    return _split_finite(
        metrics, cause or "the errors overflow float64 (targets or predictions too large)"
    )


def score_classification(y_true: npt.ArrayLike, proba: npt.ArrayLike) -> Scores:
    """`classification_metrics`; every metric is unavailable when a probability is not
    finite, since the argmax of a NaN row picks a class at random."""
    probabilities = np.asarray(proba, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        metrics = classification_metrics(y_true, probabilities)
    cause = _non_finite_cause(probabilities, "the model's class probabilities")
    if cause is not None:
        names = [*metrics, "roc_auc"] if probabilities.shape[1] == 2 else list(metrics)
        return Scores(values={}, unavailable=dict.fromkeys(names, cause))
    scores = _split_finite(metrics, "its value is not finite")
    if probabilities.shape[1] == 2 and "roc_auc" not in metrics:
        scores.unavailable["roc_auc"] = "the scored rows hold only one of the two classes"
    return scores


def _non_finite_cause(values: npt.NDArray[np.float64], what: str) -> str | None:
    finite = np.isfinite(values)
    per_row = finite.all(axis=1) if finite.ndim == 2 else finite
    bad = int(per_row.size - np.count_nonzero(per_row))
    if bad == 0:
        return None
    return f"{what} are not finite for {bad} of {per_row.size} rows"


def _split_finite(metrics: dict[str, float], cause: str) -> Scores:
    values = {k: v for k, v in metrics.items() if math.isfinite(v)}
    return Scores(values=values, unavailable={k: cause for k in metrics if k not in values})


def classification_metrics(y_true: npt.ArrayLike, proba: npt.ArrayLike) -> dict[str, float]:
    """Accuracy, log loss and macro F1, plus ROC AUC for binary tasks.

    ``y_true`` holds class indices in ``[0, k)`` and ``proba`` the predicted
    class probabilities, one row per example. ROC AUC is left out when the
    task has more than two classes or the labels hold only one, since it is
    undefined there and a placeholder value would mislead the deploy gate.
    """
    labels, probabilities = _checked_classification_inputs(y_true, proba)
    predicted = probabilities.argmax(axis=1)
    true_class_proba = probabilities[np.arange(labels.size), labels]

    metrics = {
        "accuracy": float(np.mean(predicted == labels)),
        "log_loss": float(-np.mean(np.log(np.clip(true_class_proba, LOG_LOSS_FLOOR, None)))),
        "f1_macro": _f1_macro(labels, predicted),
    }
    if probabilities.shape[1] == 2 and np.unique(labels).size == 2:
        metrics["roc_auc"] = _binary_roc_auc(labels, probabilities[:, 1])
    return metrics


def regression_metrics(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> dict[str, float]:
    """RMSE, MAE and R² of predictions against targets.

    A column vector of shape ``(n, 1)`` is accepted for either argument, since
    that is what a regression model with one output returns.
    """
    target = _as_vector("y_true", y_true)
    prediction = _as_vector("y_pred", y_pred)
    if target.size != prediction.size:
        raise ValueError(f"y_true has {target.size} values but y_pred has {prediction.size}")
    residual = target - prediction
    ss_res = float(np.sum(residual**2))
    ss_tot = float(np.sum((target - target.mean()) ** 2))
    return {
        "rmse": float(np.sqrt(ss_res / target.size)),
        "mae": float(np.mean(np.abs(residual))),
        "r2": _r2(ss_res, ss_tot),
    }


def _r2(ss_res: float, ss_tot: float) -> float:
    if ss_tot == 0.0:
        # A constant target leaves R² undefined; scikit-learn reports 1.0 for
        # a perfect fit and 0.0 otherwise, and so do we.
        return 1.0 if ss_res == 0.0 else 0.0
    return 1.0 - ss_res / ss_tot


def _checked_classification_inputs(
    y_true: npt.ArrayLike, proba: npt.ArrayLike
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    labels = np.asarray(y_true)
    probabilities = np.asarray(proba, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[1] < 2:
        # A single column would make argmax always pick class 0, silently
        # scoring a sigmoid output as if every prediction were negative.
        raise ValueError(f"proba must have shape (n, k) with k >= 2, got {probabilities.shape}")
    if labels.ndim != 1 or labels.size != probabilities.shape[0]:
        raise ValueError(f"y_true must have shape ({probabilities.shape[0]},), got {labels.shape}")
    if labels.size == 0:
        raise ValueError("cannot score an empty set of examples")
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_):
        raise ValueError(f"y_true must hold integer class indices, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if labels.min() < 0 or labels.max() >= probabilities.shape[1]:
        raise ValueError(f"y_true holds class indices outside [0, {probabilities.shape[1]})")
    return labels, probabilities


def _f1_macro(labels: npt.NDArray[np.int64], predicted: npt.NDArray[np.int64]) -> float:
    # Averaged over classes seen in either the labels or the predictions, as
    # scikit-learn does by default: a class the model never predicts still
    # counts (with F1 0), and a class absent from both cannot be scored at all.
    scores = []
    for cls in np.union1d(labels, predicted):
        true_pos = np.count_nonzero((predicted == cls) & (labels == cls))
        false_pos = np.count_nonzero((predicted == cls) & (labels != cls))
        false_neg = np.count_nonzero((predicted != cls) & (labels == cls))
        # Never zero: cls occurs in the labels or the predictions.
        scores.append(2 * true_pos / (2 * true_pos + false_pos + false_neg))
    return float(np.mean(scores))


def _binary_roc_auc(labels: npt.NDArray[np.int64], scores: npt.NDArray[np.float64]) -> float:
    # The Mann-Whitney U statistic equals the area under the ROC curve, and
    # average ranks count a tied positive/negative pair as half a win, which
    # is what the trapezoids of scikit-learn's curve do.
    ranks = _average_ranks(scores)
    positive = labels == 1
    n_pos = int(np.count_nonzero(positive))
    n_neg = labels.size - n_pos
    u_statistic = float(ranks[positive].sum()) - n_pos * (n_pos + 1) / 2
    return u_statistic / (n_pos * n_neg)


def _average_ranks(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    # A group of tied values occupying ranks start+1 .. start+count shares
    # their mean, start + (count + 1) / 2.
    starts = np.cumsum(counts) - counts
    group_rank = starts + (counts + 1) / 2.0
    ranks: npt.NDArray[np.float64] = group_rank[inverse.reshape(-1)]
    return ranks


def _as_vector(name: str, values: npt.ArrayLike) -> npt.NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"{name} must have shape (n,) or (n, 1), got {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty")
    return array
