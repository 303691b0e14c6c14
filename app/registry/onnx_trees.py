"""A boosted tree ensemble and its feature assembly as one ONNX graph (ai.onnx.ml).

Inputs, `n` rows each, as the neural export's (`onnx_graph`):
- `numeric`: float32 `[n, len(numeric columns)]`, raw values, NaN where missing;
- `categorical` (only when the model has such columns): int64 `[n, len(categorical
  columns)]`, each value's index in that column's sorted `categories` (listed in the
  graph's metadata), -1 for a value not seen in training, -2 for a missing one.
Outputs: regression, `output` float32 `[n]`, the prediction in the target's units
(base score plus the leaves' values: the trees are fit to the raw target).
Classification, `output` float32 `[n, k]`, every class's probability (binary too: the
ensemble's one raw score is class 1's logit), and `label` int64 `[n]`, the index of
the likeliest class in the metadata's `classes`.

Inside the graph a negative code becomes NaN, so an unseen category follows a split's
missing direction as a missing one does, and the columns are put in the order the
trees were grown on (`preprocessor.columns`).

Thresholds: our splits compare float64 values with float64 thresholds. The graph
casts its float32 input to double and uses the ops' double attributes
(`nodes_values_as_tensor`, ai.onnx.ml opset 3, which onnxruntime implements only for
double input), so on the values it is given it routes every row exactly as
`TreeEnsemble.predict_raw` does on the same values as float64, and sums the leaves in
double. What float32 costs is at the input: a value within float32 rounding of a
threshold (it and the threshold round to the same float32, or straddle it) may go
the other way than the caller's float64 value would have. The outputs are float32.
"""

import json
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from app.training.preprocessing import Preprocessor
from app.training.trees.ensemble import LEAF, TreeEnsemble

OPSET = 17
ML_DOMAIN = "ai.onnx.ml"
# Version 3 of TreeEnsembleRegressor/Classifier is the first with double attributes and
# their last: ai.onnx.ml 5 deprecates them for TreeEnsemble.
ML_OPSET = 3
TASKS = {"squared_error": "regression", "logistic": "classification", "softmax": "classification"}


def export_tree_onnx(
    ensemble: TreeEnsemble, preprocessor: Preprocessor, task: str, objective: str
) -> bytes:
    classes = _check(ensemble, preprocessor, task, objective)
    inputs, nodes = _assembled_features(preprocessor, "features")
    tree, leaves = _tree_attributes(ensemble)
    if max(tree["nodes_featureids"]) >= len(preprocessor.columns):
        raise ValueError(f"a split uses a feature beyond the {len(preprocessor.columns)} columns")
    base = np.asarray(ensemble.base_score, np.float64)
    if objective == "logistic":
        leaves, base = _positive_leaves_shifted(leaves, base)
    tree_ids, node_ids, output_ids, weights = (list(column) for column in zip(*leaves, strict=True))
    thresholds = tree.pop("nodes_values")
    common: dict[str, Any] = {
        **tree,
        "nodes_values_as_tensor": _doubles(thresholds),
        "base_values_as_tensor": _doubles(base),
        "domain": ML_DOMAIN,
    }
    if objective == "squared_error":
        axes = numpy_helper.from_array(np.array([1], np.int64))
        nodes += [
            helper.make_node(
                "TreeEnsembleRegressor",
                ["features"],
                ["scores"],
                n_targets=1,
                aggregate_function="SUM",
                post_transform="NONE",
                target_treeids=tree_ids,
                target_nodeids=node_ids,
                target_ids=output_ids,
                target_weights_as_tensor=_doubles(weights),
                **common,
            ),
            helper.make_node("Constant", [], ["squeeze_axes"], value=axes),
            helper.make_node("Squeeze", ["scores", "squeeze_axes"], ["output"]),
        ]
        outputs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["rows"])]
    else:
        nodes.append(
            helper.make_node(
                "TreeEnsembleClassifier",
                ["features"],
                ["label", "output"],
                classlabels_int64s=list(range(classes)),
                post_transform="LOGISTIC" if objective == "logistic" else "SOFTMAX",
                class_treeids=tree_ids,
                class_nodeids=node_ids,
                class_ids=output_ids,
                class_weights_as_tensor=_doubles(weights),
                **common,
            )
        )
        outputs = [
            helper.make_tensor_value_info("label", TensorProto.INT64, ["rows"]),
            helper.make_tensor_value_info("output", TensorProto.FLOAT, ["rows", classes]),
        ]
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid(ML_DOMAIN, ML_OPSET)]
    model = helper.make_model(
        helper.make_graph(nodes, "boosted_trees", inputs, outputs), opset_imports=opsets
    )
    helper.set_model_props(
        model,
        {
            "task": task,
            "numeric_columns": json.dumps([f.name for f in preprocessor.numeric]),
            "categorical_columns": json.dumps(
                [{"name": f.name, "categories": f.categories} for f in preprocessor.categorical]
            ),
            "classes": json.dumps(preprocessor.target.classes),
        },
    )
    onnx.checker.check_model(model, full_check=True)
    return bytes(model.SerializeToString())


def _check(ensemble: TreeEnsemble, pre: Preprocessor, task: str, objective: str) -> int:
    """The number of classes (0 for regression), once the arguments agree."""
    outputs = int(ensemble.base_score.size)
    if TASKS.get(objective) != task:
        raise ValueError(f"objective {objective!r} does not fit task {task!r}")
    if ensemble.n_trees and int(ensemble.tree_output.max()) >= outputs:
        raise ValueError("a tree adds to an output the ensemble has no base score for")
    if objective == "softmax" and outputs < 3:
        # onnxruntime's classifier reads two classes as one logit; logistic is that model.
        raise ValueError("softmax needs at least 3 classes")
    if objective != "softmax" and outputs != 1:
        raise ValueError(f"{objective} has one output, the ensemble {outputs}")
    if task == "regression":
        return 0
    classes = len(pre.target.classes or [])
    if classes != max(outputs, 2):
        raise ValueError(f"{classes} classes for an ensemble with {outputs} outputs")
    return classes


def _assembled_features(
    pre: Preprocessor, name: str
) -> tuple[list[onnx.ValueInfoProto], list[onnx.NodeProto]]:
    """The graph's inputs, and the nodes that turn them into `name`: double `[n,
    columns]` in `pre.columns` order, NaN for a missing or unseen value."""
    inputs = [
        helper.make_tensor_value_info("numeric", TensorProto.FLOAT, ["rows", len(pre.numeric)])
    ]
    nodes = [helper.make_node("Cast", ["numeric"], ["numeric_double"], to=TensorProto.DOUBLE)]
    blocks = ["numeric_double"]
    if pre.categorical:
        inputs.append(
            helper.make_tensor_value_info(
                "categorical", TensorProto.INT64, ["rows", len(pre.categorical)]
            )
        )
        zero = numpy_helper.from_array(np.array(0, np.int64), "zero")
        nan = numpy_helper.from_array(np.array(np.nan, np.float64), "nan")
        nodes += [
            helper.make_node("Constant", [], ["zero"], value=zero),
            helper.make_node("Constant", [], ["nan"], value=nan),
            helper.make_node("Less", ["categorical", "zero"], ["unknown"]),
            helper.make_node("Cast", ["categorical"], ["codes"], to=TensorProto.DOUBLE),
            helper.make_node("Where", ["unknown", "nan", "codes"], ["categorical_double"]),
        ]
        blocks.append("categorical_double")
    # Where each column of `pre.columns` sits in [numeric..., categorical...].
    stacked = [f.name for f in pre.numeric] + [f.name for f in pre.categorical]
    order = numpy_helper.from_array(
        np.array([stacked.index(column) for column in pre.columns], np.int64), "order"
    )
    nodes += [
        helper.make_node("Concat", blocks, ["stacked"], axis=1),
        helper.make_node("Constant", [], ["order"], value=order),
        helper.make_node("Gather", ["stacked", "order"], [name], axis=1),
    ]
    return inputs, nodes


NODE_ATTRIBUTES = (
    "nodes_treeids",
    "nodes_nodeids",
    "nodes_featureids",
    "nodes_modes",
    "nodes_truenodeids",
    "nodes_falsenodeids",
    "nodes_missing_value_tracks_true",
    "nodes_values",
)
# (tree, node id, output, weight)
Leaf = tuple[int, int, int, float]


def _tree_attributes(ensemble: TreeEnsemble) -> tuple[dict[str, list[Any]], list[Leaf]]:
    """The `nodes_*` attributes (thresholds as float64 `nodes_values`) and the leaves.
    A tree's nodes are the heap slots reachable from its root, renumbered 0.. in heap
    order."""
    nodes: list[tuple[int, int, int, str, int, int, int, float]] = []
    leaves: list[Leaf] = []
    for t in range(ensemble.n_trees):
        feature, left, right = ensemble.feature[t], ensemble.left[t], ensemble.right[t]
        slots = _reachable(feature, left, right)
        ids = {slot: index for index, slot in enumerate(slots)}
        for slot in slots:
            split_on = int(feature[slot])
            if split_on == LEAF:
                nodes.append((t, ids[slot], 0, "LEAF", 0, 0, 0, 0.0))
                leaves.append(
                    (t, ids[slot], int(ensemble.tree_output[t]), float(ensemble.value[t, slot]))
                )
                continue
            nodes.append(
                (
                    t,
                    ids[slot],
                    split_on,
                    "BRANCH_LEQ",
                    ids[int(left[slot])],
                    ids[int(right[slot])],
                    int(ensemble.default_left[t, slot]),
                    float(ensemble.threshold[t, slot]),
                )
            )
    if not nodes:
        # The ops reject an ensemble without nodes: one leaf adding nothing stands in.
        nodes, leaves = [(0, 0, 0, "LEAF", 0, 0, 0, 0.0)], [(0, 0, 0, 0.0)]
    return {
        name: list(values)
        for name, values in zip(NODE_ATTRIBUTES, zip(*nodes, strict=True), strict=True)
    }, leaves


def _reachable(feature: np.ndarray, left: np.ndarray, right: np.ndarray) -> list[int]:
    """The slots a tree uses: its root and every inner node's children, in heap order."""
    used, pending = set(), [0]
    while pending:
        slot = pending.pop()
        used.add(slot)
        if int(feature[slot]) != LEAF:
            pending += [int(left[slot]), int(right[slot])]
    return sorted(used)


def _positive_leaves_shifted(leaves: list[Leaf], base: np.ndarray) -> tuple[list[Leaf], np.ndarray]:
    """The same sums with a negative leaf: with none, onnxruntime's binary classifier
    reads the raw score as a probability (for `label` here; for the probabilities too
    in some releases). Every row reaches one leaf of tree 0, so its leaves can move
    down by what the base moves up."""
    if min(weight for *_, weight in leaves) < 0:
        return leaves, base
    shift = max(weight for tree, *_, weight in leaves if tree == 0) + 1.0
    moved = [(t, node, output, w - shift if t == 0 else w) for t, node, output, w in leaves]
    return moved, base + shift


def _doubles(values: list[Any] | np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, np.float64))
