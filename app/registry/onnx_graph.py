"""The model and its preprocessing as one ONNX graph that onnxruntime runs.

Inputs, `n` rows each:
- `numeric`: float32 `[n, len(numeric columns)]`, raw values, NaN where missing;
- `categorical` (only when the model has such columns): int64 `[n, len(categorical
  columns)]`, each value's index in that column's `categories` (listed in the graph's
  metadata), -1 for a value not seen in training, -2 for a missing one.
Output `output`: class probabilities `[n, k]`, or predictions in the target's units `[n]`.
Strings cannot enter a torch-exported graph, so the lookup of a category's index is
the one step left to the caller; imputation, standardizing and one-hot are inside.
A tree model has the same inputs and output, as an ai.onnx.ml tree ensemble
(`onnx_trees`).
"""

import json
import tempfile
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from app.registry.artifact import Artifact
from app.registry.onnx_trees import export_tree_onnx
from app.training.networks import build_network
from app.training.preprocessing import Preprocessor
from app.training.trees import MODEL_TYPE as TREES_MODEL
from app.training.trees.ensemble import TreeEnsemble
from app.training.trees.objectives import objective_for

OPSET = 17


class ServingGraph(nn.Module):
    fill: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    cat_fill: torch.Tensor

    def __init__(self, artifact: Artifact) -> None:
        super().__init__()
        pre = artifact.preprocessor
        self.task = artifact.task
        self.network = build_network(artifact.network)
        self.network.load_state_dict(artifact.state)
        self.network.eval()
        self.register_buffer("fill", torch.tensor([f.fill for f in pre.numeric]))
        self.register_buffer("mean", torch.tensor([f.mean for f in pre.numeric]))
        self.register_buffer("std", torch.tensor([f.std for f in pre.numeric]))
        self.categories = [len(f.categories) for f in pre.categorical]
        self.register_buffer(
            "cat_fill",
            torch.tensor(
                [
                    f.categories.index(f.fill) if f.fill in f.categories else -1
                    for f in pre.categorical
                ],
                dtype=torch.long,
            ),
        )
        numeric = {f.name: i for i, f in enumerate(pre.numeric)}
        categorical = {f.name: i for i, f in enumerate(pre.categorical)}
        # Feature blocks in the order the network was trained on.
        self.layout = [
            ("numeric", numeric[name]) if name in numeric else ("categorical", categorical[name])
            for name in pre.columns
        ]
        self.target_mean, self.target_std = pre.target.mean, pre.target.std

    def forward(
        self, numeric: torch.Tensor, categorical: torch.Tensor | None = None
    ) -> torch.Tensor:
        values = torch.where(torch.isnan(numeric), self.fill, numeric)
        values = (values - self.mean) / self.std
        blocks = []
        for kind, index in self.layout:
            if kind == "numeric":
                blocks.append(values[:, index : index + 1])
            else:
                assert categorical is not None
                codes = categorical[:, index]
                codes = torch.where(codes == -2, self.cat_fill[index], codes)
                span = torch.arange(self.categories[index], device=codes.device)
                blocks.append((codes.unsqueeze(1) == span).to(values.dtype))
        outputs = self.network(torch.cat(blocks, dim=1))
        if self.task == "classification":
            return torch.softmax(outputs, dim=-1)
        return outputs.squeeze(-1) * self.target_std + self.target_mean


def export_onnx(artifact: Artifact) -> bytes:
    if artifact.network.type == TREES_MODEL:
        return export_tree_onnx(
            TreeEnsemble.from_state(artifact.state),
            artifact.preprocessor,
            artifact.task,
            objective_for(artifact.task, artifact.network.n_outputs).name,
        )
    pre: Preprocessor = artifact.preprocessor
    graph = ServingGraph(artifact).eval()
    n = 2
    args: tuple[torch.Tensor, ...] = (torch.zeros(n, len(pre.numeric)),)
    names = ["numeric"]
    if pre.categorical:
        args = (*args, torch.zeros(n, len(pre.categorical), dtype=torch.long))
        names.append("categorical")
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        path = Path(folder) / "model.onnx"
        # The TorchScript exporter is deprecated in favour of one that needs onnxscript;
        # it still writes a standard graph, and this one has no control flow to lose.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            graph,
            args,
            str(path),
            input_names=names,
            output_names=["output"],
            dynamic_axes={**{name: {0: "rows"} for name in names}, "output": {0: "rows"}},
            opset_version=OPSET,
            dynamo=False,
        )
        model = onnx.load_from_string(path.read_bytes())
    metadata = {
        "task": artifact.task,
        "numeric_columns": json.dumps([f.name for f in pre.numeric]),
        "categorical_columns": json.dumps(
            [{"name": f.name, "categories": f.categories} for f in pre.categorical]
        ),
        "classes": json.dumps(pre.target.classes),
    }
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return bytes(model.SerializeToString())
