"""Loaded models kept in memory, least recently used evicted first."""

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from app.datasets.columns import feature_columns
from app.registry.artifact import Artifact, read_artifact
from app.registry.inputs import InputError, check_feature_range, records_to_columns
from app.training.networks import build_network
from app.training.preprocessing import Preprocessor
from app.training.trees import MODEL_TYPE as TREES_MODEL
from app.training.trees.ensemble import TreeEnsemble
from app.training.trees.objectives import objective_for


@dataclass(frozen=True)
class Prediction:
    predictions: list[Any]
    probabilities: list[dict[str, float]] | None


class NetworkModel:
    def __init__(self, artifact: Artifact) -> None:
        network: nn.Module = build_network(artifact.network)
        network.load_state_dict(artifact.state)
        network.eval()
        self._network, self._task = network, artifact.task

    def __call__(self, features: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            raw = self._network(torch.from_numpy(features)).double()
        if self._task == "regression":
            return np.asarray(raw.squeeze(-1).numpy())
        return np.asarray(torch.softmax(raw, dim=-1).numpy())


class TreeModel:
    def __init__(self, artifact: Artifact) -> None:
        self._ensemble = TreeEnsemble.from_state(artifact.state)
        self._objective = objective_for(artifact.task, artifact.network.n_outputs)

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return self._objective.served(self._ensemble.predict_raw(features))


class Predictor:
    def __init__(self, artifact_path: Path) -> None:
        artifact = read_artifact(artifact_path)
        self.task = artifact.task
        self.preprocessor: Preprocessor = artifact.preprocessor
        # Regression outputs in training units, or class probabilities (n, k).
        self._model: Callable[[np.ndarray], np.ndarray] = (
            TreeModel(artifact) if artifact.network.type == TREES_MODEL else NetworkModel(artifact)
        )

    @property
    def class_names(self) -> list[str]:
        return [str(c) for c in self.preprocessor.target.classes or []]

    def outputs(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """Class probabilities (n, k), or predictions in the target's units (n,)."""
        outputs = self._model(self.preprocessor.transform(columns))
        if self.task == "regression":
            return np.asarray(self.preprocessor.decode_regression(outputs))
        return outputs

    def checked_outputs(self, columns: Mapping[str, np.ndarray], first_row: int = 0) -> np.ndarray:
        """`outputs`, refusing (InputError, naming the row) what would otherwise answer
        NaN or Infinity: a feature past float32's range, or a row whose output still
        overflowed inside the network (several large features adding up)."""
        check_feature_range(columns, self.preprocessor, first_row=first_row)
        outputs = self.outputs(columns)
        finite = np.isfinite(outputs)
        if outputs.ndim > 1:
            finite = finite.all(axis=1)
        if not finite.all():
            row = first_row + int(np.argmin(finite))
            raise InputError(
                f"inputs.{row}",
                f"the model's output for inputs[{row}] is not a finite number: its values "
                "are too far outside the training data for the model's float32 arithmetic",
            )
        return outputs

    def labels(self, proba: np.ndarray) -> list[Any]:
        classes = self.preprocessor.target.classes or []
        return [classes[i] for i in np.argmax(proba, axis=1).tolist()]

    def predict_table(
        self,
        batch: pa.RecordBatch | pa.Table,
        dtypes: dict[str, str],
        *,
        first_row: int = 0,
        strict: bool = False,
    ) -> pa.Table:
        """`row_id` (the row's position, counted from `first_row`), `prediction`, and a
        `probability_<class>` column per class: batch predictions' output format.
        `strict` refuses rows whose output would not be finite (see `checked_outputs`);
        without it such rows answer NaN or Infinity, which Arrow and Parquet can hold."""
        features = feature_columns(batch, dtypes)
        outputs = self.checked_outputs(features, first_row) if strict else self.outputs(features)
        columns: dict[str, pa.Array] = {
            "row_id": pa.array(np.arange(first_row, first_row + batch.num_rows, dtype=np.int64)),
        }
        if self.task == "regression":
            columns["prediction"] = pa.array(outputs, pa.float64())
        else:
            # Arrow's take, not a Python list of labels: a row costs no Python object.
            classes = pa.array(self.preprocessor.target.classes or [])
            columns["prediction"] = classes.take(pa.array(np.argmax(outputs, axis=1)))
            for i, name in enumerate(self.class_names):
                columns[f"probability_{name}"] = pa.array(outputs[:, i], pa.float64())
        return pa.table(columns)

    def predict(self, records: Sequence[dict[str, Any]]) -> Prediction:
        outputs = self.checked_outputs(records_to_columns(records, self.preprocessor))
        if self.task == "regression":
            return Prediction(predictions=outputs.tolist(), probabilities=None)
        names = self.class_names
        return Prediction(
            predictions=self.labels(outputs),
            probabilities=[dict(zip(names, row, strict=True)) for row in outputs.tolist()],
        )


class PredictorCache:
    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[str, Predictor] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, model_id: str, artifact_path: Path) -> Predictor:
        with self._lock:
            predictor = self._items.get(model_id)
            if predictor is not None:
                self._items.move_to_end(model_id)
                return predictor
        # Loaded outside the lock: a slow load must not stall requests for other models.
        predictor = Predictor(artifact_path)
        with self._lock:
            self._items[model_id] = predictor
            self._items.move_to_end(model_id)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return predictor

    def __contains__(self, model_id: str) -> bool:
        return model_id in self._items

    def __len__(self) -> int:
        return len(self._items)
