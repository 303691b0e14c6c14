"""The best split of each node from its merged histogram, XGBoost's gain with an L2
term on the leaf weights, and leaf values.

A split sends bins 1..t of one feature left and t+1.. right; the missing bin goes to
whichever side gives the larger gain (its learned default direction). Ties go to
missing-right, then the lowest feature, then the lowest threshold, so every worker
that merges the same sums picks the same split.
"""

from dataclasses import dataclass

import numpy as np

from app.training.trees.histograms import GRADIENT, HESSIAN


@dataclass(frozen=True)
class SplitRules:
    l2: float = 1.0
    min_child_weight: float = 1.0
    min_split_gain: float = 0.0


@dataclass(frozen=True)
class Split:
    feature: int
    # Value bins 1..threshold_bin go left.
    threshold_bin: int
    default_left: bool
    gain: float
    left_weight: float
    right_weight: float


def leaf_weight(gradient: float, hessian: float, l2: float) -> float:
    """The leaf value that minimises the second-order loss: -G / (H + l2)."""
    return -gradient / (hessian + l2)


def _score(gradient: np.ndarray, hessian: np.ndarray, l2: float) -> np.ndarray:
    # An empty side with l2 = 0 divides 0 by 0; min_child_weight rules it out anyway.
    with np.errstate(divide="ignore", invalid="ignore"):
        return gradient * gradient / (hessian + l2)


# Gains closer than this, relative to the node's scale, are ties: histograms summed in
# another order (other shard counts) or derived by subtraction differ in the last bits.
TIE_TOLERANCE = 1e-9


def _tie_tolerance(top_gain: float, parent_score: float) -> float:
    return TIE_TOLERANCE * max(abs(top_gain), abs(parent_score), 1e-300)


def best_split(
    histogram: np.ndarray, rules: SplitRules, features: np.ndarray | None = None
) -> Split | None:
    """The best split of one node's histogram `(features, bins, 2)`, or None when no
    split gains more than `min_split_gain` with both children at `min_child_weight`.
    `features`, when given, are the only columns considered (column subsampling)."""
    missing = histogram[:, 0, :]  # (features, 2)
    values = histogram[:, 1:, :]  # (features, value bins, 2)
    total = histogram[0].sum(axis=0)  # every feature sees every row of the node
    # Left sums for thresholds 1..bins-1 (the last would leave the right side empty).
    left = np.cumsum(values, axis=1)[:, :-1, :]
    parent_score = _score(total[GRADIENT], total[HESSIAN], rules.l2)
    best: Split | None = None
    for default_left in (False, True):
        with_missing = left + missing[:, None, :] if default_left else left
        right = total[None, None, :] - with_missing
        gl, hl = with_missing[..., GRADIENT], with_missing[..., HESSIAN]
        gr, hr = right[..., GRADIENT], right[..., HESSIAN]
        gain = 0.5 * (_score(gl, hl, rules.l2) + _score(gr, hr, rules.l2) - parent_score)
        allowed = (hl >= rules.min_child_weight) & (hr >= rules.min_child_weight)
        if features is not None:
            mask = np.zeros(histogram.shape[0], dtype=bool)
            mask[features] = True
            allowed &= mask[:, None]
        gain = np.where(allowed & np.isfinite(gain), gain, -np.inf)
        if gain.size == 0 or not np.isfinite(gain).any():
            continue
        top = float(gain.max())
        tolerance = _tie_tolerance(top, float(parent_score))
        # The first gain within the tolerance of the best: the lowest feature, then the
        # lowest bin. Thresholds that differ only by bins the node has no rows in gain
        # the same, up to the rounding of the sums, and that must not pick one.
        feature, threshold = np.unravel_index(int(np.argmax(gain >= top - tolerance)), gain.shape)
        value = float(gain[feature, threshold])
        if value <= rules.min_split_gain:
            continue
        if best is None or value > best.gain + tolerance:
            best = Split(
                feature=int(feature),
                threshold_bin=int(threshold) + 1,
                default_left=default_left,
                gain=value,
                left_weight=(
                    leaf_weight(
                        float(gl[feature, threshold]), float(hl[feature, threshold]), rules.l2
                    )
                ),
                right_weight=(
                    leaf_weight(
                        float(gr[feature, threshold]), float(hr[feature, threshold]), rules.l2
                    )
                ),
            )
    return best


def goes_left(bins: np.ndarray, split: Split) -> np.ndarray:
    """Which of `bins` (one feature's bins of a node's rows) the split sends left."""
    return np.where(bins == 0, split.default_left, bins <= split.threshold_bin)
