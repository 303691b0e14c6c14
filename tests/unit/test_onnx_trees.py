"""The tree ensemble's ONNX graph, run by onnxruntime: the exact numbers of a
hand-built ensemble (unused heap slots skipped, double thresholds, both missing
directions), and the same predictions as our own for ensembles boosted on
scikit-learn's datasets and on one with missing values and categorical columns,
unseen and missing codes included."""

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits

from app.registry.onnx_trees import export_tree_onnx
from app.training.preprocessing import (
    CategoricalFeature,
    NumericFeature,
    Preprocessor,
    TargetEncoding,
)
from app.training.trees.binning import bin_edges, bin_matrix, bins_per_feature
from app.training.trees.ensemble import LEAF, TreeEnsemble
from app.training.trees.grow import GrownTree, ShardRows, grow_tree, to_ensemble
from app.training.trees.objectives import Objective, objective_for
from app.training.trees.splits import SplitRules

RULES = SplitRules(l2=1.0, min_child_weight=1.0)
TASKS = {"squared_error": "regression", "logistic": "classification", "softmax": "classification"}
UNSEEN, MISSING = -1, -2


def boost(
    x: np.ndarray, y: np.ndarray, objective: Objective, *, n_trees: int = 12, max_depth: int = 3
) -> TreeEnsemble:
    """Boosting in one process, a tree per output per iteration. The one place that
    knows how trees are grown and stacked, should that change."""
    edges = [bin_edges(x[:, j], 32) for j in range(x.shape[1])]
    binned, n_bins = bin_matrix(x, edges), bins_per_feature(edges)
    base = objective.base_score(y)
    trees: list[tuple[GrownTree, int]] = []
    for _ in range(n_trees):
        raw = to_ensemble(trees, edges=edges, base_score=base, max_depth=max_depth)
        gradients, hessians = objective.gradients(raw.predict_binned(binned), y)
        for output in range(objective.outputs):
            rows = ShardRows(binned, gradients[:, output], hessians[:, output])
            tree = grow_tree(
                [rows], rules=RULES, max_depth=max_depth, n_bins=n_bins, learning_rate=0.3
            )
            trees.append((tree, output))
    return to_ensemble(trees, edges=edges, base_score=base, max_depth=max_depth)


def preprocessor(
    columns: list[str], categories: dict[str, list[str]], task: str, classes: int = 0
) -> Preprocessor:
    return Preprocessor(
        numeric=[
            NumericFeature(c, "float64", 0.0, 0.0, 1.0) for c in columns if c not in categories
        ],
        categorical=[CategoricalFeature(c, "string", None, categories[c]) for c in categories],
        target=TargetEncoding("y", "float64", task, list(range(classes)) if classes else None),
        columns=columns,
    )


def onnx_inputs(
    pre: Preprocessor, features: np.ndarray, unseen: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """The graph's inputs for rows in `pre.columns` order (categories as codes, NaN
    where missing): a NaN code is sent as missing, or as unseen where `unseen` says."""
    position = {name: j for j, name in enumerate(pre.columns)}
    numeric = features[:, [position[f.name] for f in pre.numeric]].astype(np.float32)
    inputs: dict[str, np.ndarray] = {"numeric": numeric.reshape(len(features), len(pre.numeric))}
    if pre.categorical:
        codes = features[:, [position[f.name] for f in pre.categorical]]
        sent = np.where(np.isnan(codes), MISSING, np.nan_to_num(codes)).astype(np.int64)
        if unseen is not None:
            sent[np.isnan(codes) & unseen[:, None]] = UNSEEN
        inputs["categorical"] = sent
    return inputs


def run(model: bytes, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return list(session.run(None, inputs))


def ours(ensemble: TreeEnsemble, objective: Objective, features: np.ndarray) -> np.ndarray:
    """Our prediction for the values the graph sees: float32, compared in float64."""
    raw = ensemble.predict_raw(features.astype(np.float32).astype(np.float64))
    predicted = objective.predict(raw)
    if objective.name == "squared_error":
        return predicted[:, 0]
    if objective.name == "logistic":
        return np.hstack([1 - predicted, predicted])
    return predicted


def assert_matches(
    ensemble: TreeEnsemble,
    objective: Objective,
    pre: Preprocessor,
    features: np.ndarray,
    **kw: np.ndarray,
) -> None:
    model = export_tree_onnx(ensemble, pre, TASKS[objective.name], objective.name)
    outputs = run(model, onnx_inputs(pre, features, **kw))
    expected = ours(ensemble, objective, features)
    np.testing.assert_allclose(outputs[-1], expected, rtol=1e-6, atol=1e-5)
    if objective.name != "squared_error":
        label, probabilities = outputs
        confident = np.sort(expected, axis=1)[:, -1] - np.sort(expected, axis=1)[:, -2] > 1e-5
        np.testing.assert_array_equal(label[confident], expected.argmax(axis=1)[confident])
        np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)


def hand_built(
    trees: list[dict[int, tuple[int, float, bool, float]]], base: list[float]
) -> TreeEnsemble:
    """Depth-2 heap trees from {slot: (feature, threshold, default_left, value)}; a
    slot's children are 2i+1 and 2i+2 when its feature is not LEAF. Slots left out
    hold junk a reader of the heap must not follow."""
    shape = (len(trees), 7)
    arrays = {
        "feature": np.full(shape, 1, np.int32),
        "threshold": np.full(shape, -1e9),
        "default_left": np.ones(shape, bool),
        "left": np.full(shape, 5, np.int32),
        "right": np.full(shape, 6, np.int32),
        "value": np.full(shape, 1e6),
    }
    for t, nodes in enumerate(trees):
        for slot, (feature, threshold, default_left, value) in nodes.items():
            inner = feature != LEAF
            row = (feature, threshold, default_left, value)
            for name, entry in zip(
                ("feature", "threshold", "default_left", "value"), row, strict=True
            ):
                arrays[name][t, slot] = entry
            arrays["left"][t, slot] = 2 * slot + 1 if inner else LEAF
            arrays["right"][t, slot] = 2 * slot + 2 if inner else LEAF
    return TreeEnsemble(
        **arrays,
        threshold_bin=np.zeros(shape, np.int32),
        gain=np.zeros(shape),
        tree_output=np.zeros(len(trees), np.int32),
        base_score=np.array(base),
    )


TWO_TREES = [
    # a <= 0.5 (missing left) ? 1 : (b <= 2 (missing right) ? 10 : 20); slots 3, 4 unused.
    {0: (0, 0.5, True, 0.0), 1: (LEAF, 0, False, 1.0), 2: (1, 2.0, False, 0.0),
     5: (LEAF, 0, False, 10.0), 6: (LEAF, 0, False, 20.0)},
    # b <= -1 (missing left) ? (a <= 0.1 (missing left) ? 100 : 200) : 300; 5, 6 unused.
    {0: (1, -1.0, True, 0.0), 1: (0, 0.1, True, 0.0), 2: (LEAF, 0, False, 300.0),
     3: (LEAF, 0, False, 100.0), 4: (LEAF, 0, False, 200.0)},
]  # fmt: skip


def test_a_hand_built_ensemble_gives_exactly_its_numbers() -> None:
    ensemble = hand_built(TWO_TREES, [0.5])
    tenth = np.float32(0.1)  # just above the double 0.1
    features = np.array(
        [
            [0.0, 0.0],
            [1.0, 3.0],
            [np.nan, np.nan],
            [tenth, -5.0],
            [np.nextafter(tenth, np.float32(0)), -5.0],
            [2.0, np.nan],
        ]
    )
    expected = np.array([301.5, 320.5, 101.5, 201.5, 101.5, 220.5], np.float32)
    np.testing.assert_array_equal(ensemble.predict_raw(features.astype(np.float32))[:, 0], expected)
    pre = preprocessor(["a", "b"], {}, "regression")
    model = export_tree_onnx(ensemble, pre, "regression", "squared_error")
    (output,) = run(model, onnx_inputs(pre, features))
    assert output.dtype == np.float32 and output.shape == (6,)
    np.testing.assert_array_equal(output, expected)
    (node,) = [n for n in onnx.load_from_string(model).graph.node if n.op_type.startswith("Tree")]
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attributes["nodes_treeids"] == [0] * 5 + [1] * 5
    assert attributes["nodes_nodeids"] == [0, 1, 2, 3, 4] * 2
    assert attributes["nodes_missing_value_tracks_true"] == [1, 0, 0, 0, 0, 1, 1, 0, 0, 0]
    assert "nodes_values" not in attributes
    assert onnx.numpy_helper.to_array(attributes["nodes_values_as_tensor"]).dtype == np.float64


@pytest.mark.parametrize("base", [-1.0, 0.0, 1.0])
def test_binary_probabilities_and_labels_with_no_negative_leaf(base: float) -> None:
    ensemble = hand_built(
        [{0: (0, 0.0, False, 0.0), 1: (LEAF, 0, False, 0.5), 2: (LEAF, 0, False, 2.0)}], [base]
    )
    pre = preprocessor(["a"], {}, "classification", classes=2)
    assert_matches(
        ensemble, objective_for("classification", 2), pre, np.array([[-1.0], [1.0], [np.nan]])
    )


@pytest.mark.parametrize("objective", list(TASKS))
def test_an_ensemble_without_trees_predicts_its_base_score(objective: str) -> None:
    classes = {"squared_error": 0, "logistic": 2, "softmax": 3}[objective]
    target = objective_for(TASKS[objective], classes)
    base = np.array([0.3, -0.2, 1.1][: target.outputs])
    pre = preprocessor(["a", "b"], {}, TASKS[objective], classes)
    features = np.array([[0.0, 1.0], [np.nan, 2.0]])
    assert_matches(TreeEnsemble.empty(3, base), target, pre, features)


@pytest.mark.parametrize(
    ("loader", "task"),
    [
        (load_diabetes, "regression"),
        (load_breast_cancer, "classification"),
        (load_digits, "classification"),
    ],
    ids=["diabetes", "breast_cancer", "digits"],
)
def test_boosted_on_bundled_datasets(loader: Callable[..., Any], task: str) -> None:
    x, y = loader(return_X_y=True)
    y = y.astype(np.float64)
    classes = len(np.unique(y)) if task == "classification" else 0
    objective = objective_for(task, classes)
    test = np.arange(len(y)) % 4 == 0
    ensemble = boost(x[~test], y[~test], objective, n_trees=8 if classes > 2 else 20)
    assert (ensemble.feature >= 0).sum() > 10 * objective.outputs
    pre = preprocessor([f"x{j}" for j in range(x.shape[1])], {}, task, classes)
    assert_matches(ensemble, objective, pre, x[test])


def with_missing_and_categories(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Columns color (3 categories), a, shape (2), b; codes as floats, NaN where
    missing. The target depends on the missing values too."""
    rng = np.random.default_rng(seed)
    color = rng.integers(0, 3, rows).astype(np.float64)
    shape = rng.integers(0, 2, rows).astype(np.float64)
    a, b = rng.normal(size=rows), rng.normal(size=rows)
    y = np.array([1.0, -2.0, 3.0])[color.astype(int)] + 2 * shape * (b > 0) + a
    color[rng.random(rows) < 0.15] = np.nan
    shape[rng.random(rows) < 0.1] = np.nan
    a[rng.random(rows) < 0.2] = np.nan
    y = y + np.where(np.isnan(color), 4.0, 0.0) + np.where(np.isnan(a), -3.0, 0.0)
    return np.column_stack([color, a, shape, b]), y + 0.1 * rng.normal(size=rows)


@pytest.mark.parametrize("objective", list(TASKS))
def test_missing_values_and_categories_take_our_paths(objective: str) -> None:
    x, y = with_missing_and_categories(1200, seed=0)
    classes = {"squared_error": 0, "logistic": 2, "softmax": 3}[objective]
    if classes:
        y = np.searchsorted(np.quantile(y, np.linspace(0, 1, classes + 1)[1:-1]), y).astype(
            np.float64
        )
    target = objective_for(TASKS[objective], classes)
    ensemble = boost(x, y, target)
    inner = ensemble.feature >= 0
    assert set(ensemble.feature[inner].tolist()) >= {0, 1, 2}
    assert {True, False} <= set(ensemble.default_left[inner].tolist())
    held_out, _ = with_missing_and_categories(400, seed=1)
    unseen = np.arange(400) % 2 == 0
    pre = preprocessor(
        ["color", "a", "shape", "b"],
        {"color": ["blue", "green", "red"], "shape": ["round", "square"]},
        TASKS[objective],
        classes,
    )
    sent = onnx_inputs(pre, held_out, unseen)["categorical"]
    assert {UNSEEN, MISSING} <= set(sent.ravel().tolist())
    assert_matches(ensemble, target, pre, held_out, unseen=unseen)


def test_inputs_outputs_and_metadata() -> None:
    x, y = with_missing_and_categories(300, seed=2)
    target = objective_for("classification", 3)
    y = np.searchsorted(np.quantile(y, [1 / 3, 2 / 3]), y).astype(np.float64)
    pre = preprocessor(
        ["color", "a", "shape", "b"],
        {"color": ["blue", "green", "red"], "shape": ["round", "square"]},
        "classification",
        3,
    )
    model = onnx.load_from_string(
        export_tree_onnx(boost(x, y, target, n_trees=2), pre, "classification", "softmax")
    )
    onnx.checker.check_model(model, full_check=True)
    types = {i.name: i.type.tensor_type for i in model.graph.input}
    assert list(types) == ["numeric", "categorical"]
    assert types["numeric"].elem_type == onnx.TensorProto.FLOAT
    assert types["categorical"].elem_type == onnx.TensorProto.INT64
    assert [d.dim_value for d in types["numeric"].shape.dim][1:] == [2]
    assert [o.name for o in model.graph.output] == ["label", "output"]
    metadata = {p.key: p.value for p in model.metadata_props}
    assert metadata["task"] == "classification"
    assert json.loads(metadata["numeric_columns"]) == ["a", "b"]
    assert json.loads(metadata["categorical_columns"]) == [
        {"name": "color", "categories": ["blue", "green", "red"]},
        {"name": "shape", "categories": ["round", "square"]},
    ]
    assert json.loads(metadata["classes"]) == [0, 1, 2]
    numeric_only = preprocessor(["a", "b"], {}, "regression")
    regression = onnx.load_from_string(
        export_tree_onnx(hand_built(TWO_TREES, [0.0]), numeric_only, "regression", "squared_error")
    )
    assert [i.name for i in regression.graph.input] == ["numeric"]
    assert [o.name for o in regression.graph.output] == ["output"]


def test_arguments_that_disagree_are_refused() -> None:
    ensemble = hand_built(TWO_TREES, [0.0])
    regression = preprocessor(["a", "b"], {}, "regression")
    with pytest.raises(ValueError, match="does not fit"):
        export_tree_onnx(ensemble, regression, "classification", "squared_error")
    with pytest.raises(ValueError, match="classes"):
        export_tree_onnx(ensemble, regression, "classification", "logistic")
    with pytest.raises(ValueError, match="beyond"):
        export_tree_onnx(
            ensemble, preprocessor(["a"], {}, "regression"), "regression", "squared_error"
        )
