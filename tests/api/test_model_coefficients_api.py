"""A linear model's coefficients by raw column name: each weight named by its column,
a text column's by its category, a classifier's by its class; the same numbers as the
artifact's weights."""

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from sample_data import iris_table, table_to_csv

from app.registry.artifact import read_artifact
from app.storage import BlobStore

TrainJob = Callable[..., dict[str, Any]]


def _model(client: TestClient, job: dict[str, Any]) -> dict[str, Any]:
    assert job["status"] == "succeeded", job
    return dict(client.get(f"/v1/models/{job['model_id']}").json())


def test_a_classifiers_weights_are_named_by_column_category_and_class(
    client: TestClient, train_job: TrainJob, store: BlobStore
) -> None:
    table = iris_table()
    table = table.append_column("size", pa.array(["s", "m", "l"] * (table.num_rows // 3)))
    job = train_job("iris.csv", table_to_csv(table), target="species",
                    distribution={"shards": 2}, training={"rounds": 3, "seed": 1})  # fmt: skip
    model = _model(client, job)
    rows = model["coefficients"]
    classes = ["setosa", "versicolor", "virginica"]
    # 4 numeric columns and 3 categories of `size`, for each of 3 classes.
    assert len(rows) == (4 + 3) * 3
    assert {(r["feature"], r["category"]) for r in rows} == {
        *((c, None) for c in ["sepal_length", "sepal_width", "petal_length", "petal_width"]),
        *(("size", v) for v in ["l", "m", "s"]),
    }
    assert {r["class"] for r in rows} == set(classes)
    magnitudes = [abs(r["weight"]) for r in rows]
    assert magnitudes == sorted(magnitudes, reverse=True)
    weights = read_artifact(store.path(f"models/{model['id']}/model.safetensors")).state["0.weight"]
    row = next(r for r in rows if r["feature"] == "petal_length" and r["class"] == "virginica")
    assert row["weight"] == pytest.approx(float(weights[2, 2]), rel=1e-6)


def test_a_regressions_weights_have_no_class_and_trees_have_none(
    client: TestClient, train_job: TrainJob
) -> None:
    table = iris_table().drop_columns(["species"])
    linear = _model(client, train_job("r.csv", table_to_csv(table), target="petal_width",
                                      model={"type": "linear_regression"},
                                      training={"rounds": 3}))  # fmt: skip
    assert {r["class"] for r in linear["coefficients"]} == {None}
    assert len(linear["coefficients"]) == 3
    mlp = _model(client, train_job("r.csv", table_to_csv(table), target="petal_width",
                                   model={"type": "mlp", "hidden_layers": [4]},
                                   training={"rounds": 2}))  # fmt: skip
    assert mlp["coefficients"] is None


def test_weights_that_are_not_finite_give_no_coefficients() -> None:
    import torch

    from app.registry.coefficients import linear_coefficients
    from app.training.preprocessing import NumericFeature, Preprocessor, TargetEncoding

    preprocessor = Preprocessor(
        numeric=[NumericFeature("x", "float", 0.0, 0.0, 1.0)],
        categorical=[],
        target=TargetEncoding("y", "float", "regression"),
        columns=["x"],
    )
    finite = {"0.weight": torch.tensor([[0.5]]), "0.bias": torch.tensor([0.0])}
    assert linear_coefficients("linear_regression", finite, preprocessor) == [
        {"feature": "x", "category": None, "class": None, "weight": 0.5}
    ]
    diverged = {"0.weight": torch.tensor([[float("nan")]]), "0.bias": torch.tensor([0.0])}
    assert linear_coefficients("linear_regression", diverged, preprocessor) is None
