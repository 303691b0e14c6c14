"""Model registry and predict, on models trained by the real stage functions."""

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from inprocess import run_job
from sample_data import SEED_EXAMPLE_CSV, iris_table, table_to_csv

from app.storage import BlobStore

MakeDataset = Callable[[str, bytes], str]


@pytest.fixture
def train(train_job: Callable[..., dict]) -> Callable[..., dict]:
    def make(name: str, data: bytes, **spec: object) -> dict:
        job = train_job(name, data, **spec)
        assert job["status"] == "succeeded", job
        return job

    return make


TRAINING = {"rounds": 20, "local_epochs": 5, "batch_size": 16, "learning_rate": 0.05}
SEED_SPEC = {
    "target": "label",
    "distribution": {"shards": 1},
    "validation": {"holdout_fraction": 0.0, "validation_fraction": 0.0},
    "training": {"rounds": 30, "learning_rate": 0.1},
}


def test_seed_example_predicts_one_for_two_three(client: TestClient, train) -> None:  # type: ignore[no-untyped-def]
    job = train("seed.csv", SEED_EXAMPLE_CSV, **SEED_SPEC)
    model = client.get(f"/v1/models/{job['model_id']}").json()
    assert model["status"] == "deployed"
    assert model["classes"] == [0, 1]
    assert model["features"] == [{"name": "x1", "dtype": "int"}, {"name": "x2", "dtype": "int"}]
    response = client.post(
        f"/v1/models/{job['model_id']}/predict", json={"inputs": [{"x1": 2, "x2": 3}]}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "prediction"
    assert body["predictions"] == [1]
    probabilities = body["probabilities"][0]
    assert set(probabilities) == {"0", "1"}
    assert probabilities["1"] > 0.5
    assert sum(probabilities.values()) == pytest.approx(1.0)


def test_iris_multiclass_returns_label_strings(client: TestClient, train) -> None:  # type: ignore[no-untyped-def]
    job = train(
        "iris.csv",
        table_to_csv(iris_table()),
        target="species",
        training={"rounds": 15, "learning_rate": 0.1},
        deploy_if={"metric": "accuracy", "min": 0.8},
    )
    model = client.get(f"/v1/models/{job['model_id']}").json()
    assert model["classes"] == ["setosa", "versicolor", "virginica"]
    assert model["gate"]["passed"] is True
    assert model["metrics"]["accuracy"] >= 0.8
    rows = [
        {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
        {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3},
    ]
    body = client.post(f"/v1/models/{job['model_id']}/predict", json={"inputs": rows}).json()
    assert body["predictions"] == ["setosa", "virginica"]
    rounds = client.get(f"/v1/jobs/{job['id']}/metrics").json()["data"]
    assert [r["round"] for r in rounds] == list(range(1, len(rounds) + 1))
    assert all(len(r["shards"]) == 4 for r in rounds)


def test_failed_gate_rejects_and_predict_is_409(client: TestClient, train) -> None:  # type: ignore[no-untyped-def]
    job = train(
        "iris.csv",
        table_to_csv(iris_table()),
        target="species",
        training={"rounds": 1, "learning_rate": 0.001},
        deploy_if={"metric": "accuracy", "min": 0.999},
    )
    model = client.get(f"/v1/models/{job['model_id']}").json()
    assert model["status"] == "rejected"
    assert model["gate"]["passed"] is False
    response = client.post(
        f"/v1/models/{job['model_id']}/predict",
        json={
            "inputs": [{"sepal_length": 1, "sepal_width": 1, "petal_length": 1, "petal_width": 1}]
        },
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "model_not_deployed"
    # The gate's own reason, which names the metric, its value and the bound.
    assert model["gate"]["reason"] in response.json()["error"]["message"]
    rejected = client.get("/v1/models", params={"status": "rejected"}).json()["data"]
    assert [m["id"] for m in rejected] == [job["model_id"]]
    assert client.get("/v1/models", params={"status": "deployed"}).json()["data"] == []


def test_predict_input_errors_name_column_and_row(client: TestClient, train) -> None:  # type: ignore[no-untyped-def]
    job = train("seed.csv", SEED_EXAMPLE_CSV, **SEED_SPEC)
    url = f"/v1/models/{job['model_id']}/predict"
    missing = client.post(url, json={"inputs": [{"x1": 1, "x2": 2}, {"x1": 1}]})
    assert missing.status_code == 422
    assert missing.json()["error"]["param"] == "inputs.1.x2"
    assert "x2" in missing.json()["error"]["message"]
    wrong_type = client.post(url, json={"inputs": [{"x1": "abc", "x2": 2}]})
    assert wrong_type.status_code == 422
    assert wrong_type.json()["error"]["param"] == "inputs.0.x1"
    empty = client.post(url, json={"inputs": []})
    assert empty.status_code == 422
    missing_value = client.post(url, json={"inputs": [{"x1": None, "x2": 3}]})
    assert missing_value.status_code == 200  # imputed like training's missing values


def test_predict_names_a_bad_value_deep_in_a_long_request(client: TestClient, train) -> None:  # type: ignore[no-untyped-def]
    job = train("seed.csv", SEED_EXAMPLE_CSV, **SEED_SPEC)
    url = f"/v1/models/{job['model_id']}/predict"
    rows: list[dict[str, object]] = [{"x1": float(i % 7), "x2": i % 5} for i in range(5000)]
    good = client.post(url, json={"inputs": rows})
    assert good.status_code == 200 and len(good.json()["predictions"]) == 5000
    # Whole-column conversion and the row-by-row path must agree on every value.
    one_by_one = [client.post(url, json={"inputs": [r]}).json() for r in rows[:7]]
    assert [p["predictions"][0] for p in one_by_one] == good.json()["predictions"][:7]
    assert [p["probabilities"][0] for p in one_by_one] == good.json()["probabilities"][:7]

    for bad, param in [
        ({"x1": "3", "x2": 1}, "inputs.4321.x1"),  # a numeric string is not a number
        ({"x1": 10**400, "x2": 1}, "inputs.4321.x1"),  # past float64's range
        ({"x2": 1}, "inputs.4321.x1"),
    ]:
        response = client.post(url, json={"inputs": [*rows[:4321], bad, *rows[4322:]]})
        assert response.status_code == 422, response.text
        assert response.json()["error"]["param"] == param


def test_predict_body_that_is_not_json_is_422(client: TestClient, train) -> None:  # type: ignore[no-untyped-def]
    job = train("seed.csv", SEED_EXAMPLE_CSV, **SEED_SPEC)
    url = f"/v1/models/{job['model_id']}/predict"
    response = client.post(
        url, content=b'{"inputs": [{"x1": 1,', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_json" and "line 1 column" in error["message"]
    wrong_shape = client.post(url, json={"inputs": [[1, 2]]})
    assert wrong_shape.status_code == 422
    assert wrong_shape.json()["error"]["param"] == "inputs.0"


def test_too_many_rows_is_413(client: TestClient, train, settings) -> None:  # type: ignore[no-untyped-def]
    job = train("seed.csv", SEED_EXAMPLE_CSV, **SEED_SPEC)
    rows = [{"x1": 1, "x2": 2}] * (settings.max_predict_rows + 1)
    response = client.post(f"/v1/models/{job['model_id']}/predict", json={"inputs": rows})
    assert response.status_code == 413
    assert response.json()["error"]["param"] == "inputs"


def test_unknown_model_is_404(client: TestClient) -> None:
    assert client.get("/v1/models/mdl_nope").status_code == 404
    response = client.post("/v1/models/mdl_nope/predict", json={"inputs": [{"a": 1}]})
    assert response.status_code == 404


def test_deleting_the_dataset_removes_shards_but_keeps_the_model(  # type: ignore[no-untyped-def]
    client: TestClient, train, store: BlobStore
) -> None:
    job = train("seed.csv", SEED_EXAMPLE_CSV, **SEED_SPEC)
    shards = store.path(f"jobs/{job['id']}/shards")
    assert shards.exists()
    assert client.delete(f"/v1/datasets/{job['spec']['dataset_id']}").status_code == 200
    assert not shards.exists()
    assert not store.path(f"jobs/{job['id']}/holdout.npy").exists()
    url = f"/v1/models/{job['model_id']}/predict"
    assert client.post(url, json={"inputs": [{"x1": 2, "x2": 3}]}).json()["predictions"] == [1]


def test_a_rejected_model_can_be_deployed_by_hand(client: TestClient, train) -> None:  # type: ignore[no-untyped-def]
    job = train(
        "iris.csv",
        table_to_csv(iris_table()),
        target="species",
        training={"rounds": 1, "learning_rate": 0.001},
        deploy_if={"metric": "accuracy", "min": 0.999},
    )
    model_id = job["model_id"]
    promoted = client.post(f"/v1/models/{model_id}/deploy")
    assert promoted.status_code == 200
    body = promoted.json()
    assert body["status"] == "deployed"
    assert body["gate"]["passed"] is False and body["gate"]["overridden_at"] is not None
    assert client.post(f"/v1/models/{model_id}/deploy").json()["status"] == "deployed"
    rows = [dict.fromkeys(iris_table().column_names[:4], 1.0)]
    assert client.post(f"/v1/models/{model_id}/predict", json={"inputs": rows}).status_code == 200
    events = client.get(f"/v1/jobs/{job['id']}/events").json()["data"]
    assert [e["type"] for e in events].count("model.promoted") == 1


def test_artifact_loads_with_safetensors_and_plain_torch(client: TestClient, train) -> None:  # type: ignore[no-untyped-def]
    import json

    import torch
    from safetensors import safe_open
    from safetensors.torch import load

    job = train("iris.csv", table_to_csv(iris_table()), target="species", training=TRAINING)
    response = client.get(f"/v1/models/{job['model_id']}/artifact")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"

    # The five lines docs/artifacts.md shows, on the downloaded bytes:
    tensors = load(response.content)
    path = client.app.state.store.path(f"models/{job['model_id']}/model.safetensors")  # type: ignore[attr-defined]
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
    pre = json.loads(meta["preprocessing"])
    assert (
        json.loads(meta["schema"]) == client.get(f"/v1/models/{job['model_id']}").json()["features"]
    )

    rows = [
        [5.1, 3.5, 1.4, 0.2],
        [6.7, 3.0, 5.2, 2.3],
    ]
    x = torch.tensor(rows, dtype=torch.float64)
    mean = torch.tensor([f["mean"] for f in pre["numeric"]], dtype=torch.float64)
    std = torch.tensor([f["std"] for f in pre["numeric"]], dtype=torch.float64)
    logits = ((x - mean) / std).float() @ tensors["0.weight"].T + tensors["0.bias"]
    by_hand = [pre["target"]["classes"][i] for i in logits.argmax(dim=1).tolist()]
    names = [f["name"] for f in pre["numeric"]]
    api = client.post(
        f"/v1/models/{job['model_id']}/predict",
        json={"inputs": [dict(zip(names, r, strict=True)) for r in rows]},
    ).json()["predictions"]
    assert by_hand == api == ["setosa", "virginica"]


def test_rerun_makes_a_new_job_and_model_from_the_same_spec(  # type: ignore[no-untyped-def]
    client: TestClient, train, sessions, store, params
) -> None:
    job = train("seed.csv", SEED_EXAMPLE_CSV, **SEED_SPEC)
    response = client.post(f"/v1/jobs/{job['id']}/rerun")
    assert response.status_code == 201
    again = response.json()
    assert again["id"] != job["id"] and again["spec"] == job["spec"]
    run_job(sessions, store, params, again["id"])
    finished = client.get(f"/v1/jobs/{again['id']}").json()
    assert finished["model_id"] not in (None, job["model_id"])
    assert len(client.get("/v1/models").json()["data"]) == 2


def test_lru_cache_keeps_the_most_recent_models(client: TestClient, train) -> None:  # type: ignore[no-untyped-def]
    from app.registry.predictor import PredictorCache

    cache = PredictorCache(size=2)
    client.app.state.predictors = cache  # type: ignore[attr-defined]
    ids = [train("seed.csv", SEED_EXAMPLE_CSV, **SEED_SPEC)["model_id"] for _ in range(3)]
    for model_id in ids:
        url = f"/v1/models/{model_id}/predict"
        assert client.post(url, json={"inputs": [{"x1": 2, "x2": 3}]}).status_code == 200
    assert len(cache) == 2
    assert ids[0] not in cache and ids[1] in cache and ids[2] in cache
    client.post(f"/v1/models/{ids[1]}/predict", json={"inputs": [{"x1": 2, "x2": 3}]})
    client.post(f"/v1/models/{ids[0]}/predict", json={"inputs": [{"x1": 2, "x2": 3}]})
    assert ids[2] not in cache and ids[1] in cache and ids[0] in cache


def test_batch_prediction_equals_online_predictions(  # type: ignore[no-untyped-def]
    client: TestClient, train, ready_dataset, sessions, store
) -> None:
    import io

    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from app.db import session_scope
    from app.registry.batch import mark_running, run_batch_prediction

    job = train("iris.csv", table_to_csv(iris_table()), target="species", training=TRAINING)
    model_id = job["model_id"]
    unlabeled = iris_table().drop_columns(["species"])
    dataset_id = ready_dataset("unlabeled.csv", table_to_csv(unlabeled))
    created = client.post(
        f"/v1/models/{model_id}/batch_predictions", json={"dataset_id": dataset_id}
    )
    assert created.status_code == 201, created.text
    batch = created.json()
    assert batch["object"] == "batch_prediction" and batch["status"] == "queued"
    url = f"/v1/models/{model_id}/batch_predictions/{batch['id']}"
    assert client.get(f"{url}/output").status_code == 409
    with session_scope(sessions) as session:
        mark_running(session, batch["id"])
    assert client.get(url).json()["status"] == "running"
    with session_scope(sessions) as session:
        run_batch_prediction(session, store, batch["id"])
    done = client.get(url).json()
    assert done["status"] == "succeeded" and done["rows"] == 150

    output = pq.read_table(io.BytesIO(client.get(f"{url}/output").content))
    assert output.column_names == [
        "row_id",
        "prediction",
        "probability_setosa",
        "probability_versicolor",
        "probability_virginica",
    ]
    assert output.column("row_id").to_pylist() == list(range(150))
    online = client.post(
        f"/v1/models/{model_id}/predict", json={"inputs": unlabeled.to_pylist()}
    ).json()
    assert output.column("prediction").to_pylist() == online["predictions"]
    online_setosa = [p["setosa"] for p in online["probabilities"]]
    assert output.column("probability_setosa").to_pylist() == pytest.approx(online_setosa)

    as_csv = client.get(f"{url}/output", params={"format": "csv"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert pacsv.read_csv(io.BytesIO(as_csv.content)).num_rows == 150


def test_batch_prediction_needs_the_feature_columns(  # type: ignore[no-untyped-def]
    client: TestClient, train, ready_dataset
) -> None:
    job = train("seed.csv", SEED_EXAMPLE_CSV, **SEED_SPEC)
    dataset_id = ready_dataset("other.csv", b"x1,z\n1,2\n")
    response = client.post(
        f"/v1/models/{job['model_id']}/batch_predictions", json={"dataset_id": dataset_id}
    )
    assert response.status_code == 422
    assert "'x2'" in response.json()["error"]["message"]
    missing = client.get(f"/v1/models/{job['model_id']}/batch_predictions/bp_nope")
    assert missing.status_code == 404


def _mixed_csv(rows: int = 300) -> bytes:
    import numpy as np

    rng = np.random.default_rng(5)
    lines = ["size,color,weight,label"]
    for i in range(rows):
        size = "" if i % 9 == 0 else f"{rng.normal(3, 1):.3f}"
        color = ["red", "blue", "green", ""][i % 4]
        weight = f"{rng.normal(10, 2):.3f}"
        label = "big" if (size and float(size) > 3) or color == "red" else "small"
        lines.append(f"{size},{color},{weight},{label}")
    return ("\n".join(lines) + "\n").encode()


def test_onnx_graph_with_preprocessing_matches_the_api(client: TestClient, train) -> None:  # type: ignore[no-untyped-def]
    import io
    import json

    import numpy as np
    import onnxruntime
    import pyarrow.csv as pacsv

    job = train("mixed.csv", _mixed_csv(), target="label", training=TRAINING)
    model_id = job["model_id"]
    response = client.get(f"/v1/models/{model_id}/artifact", params={"format": "onnx"})
    assert response.status_code == 200
    session = onnxruntime.InferenceSession(response.content)
    meta = session.get_modelmeta().custom_metadata_map
    numeric = json.loads(meta["numeric_columns"])
    categorical = json.loads(meta["categorical_columns"])
    assert numeric == ["size", "weight"] and [c["name"] for c in categorical] == ["color"]

    records = pacsv.read_csv(io.BytesIO(_mixed_csv(100))).drop_columns(["label"]).to_pylist()
    records[0]["color"] = "purple"  # unseen in training

    def code(column: dict, value: object) -> int:
        if value is None:
            return -2
        return column["categories"].index(value) if value in column["categories"] else -1

    inputs = {
        "numeric": np.array(
            [[np.nan if r[c] is None else r[c] for c in numeric] for r in records], np.float32
        ),
        "categorical": np.array(
            [[code(c, r[c["name"]]) for c in categorical] for r in records], np.int64
        ),
    }
    (proba,) = session.run(["output"], inputs)
    api = client.post(f"/v1/models/{model_id}/predict", json={"inputs": records}).json()
    classes = json.loads(meta["classes"])
    assert [classes[i] for i in proba.argmax(axis=1)] == api["predictions"]
    expected = np.array([[p[str(c)] for c in classes] for p in api["probabilities"]])
    np.testing.assert_allclose(proba, expected, atol=1e-5)


def test_onnx_regression_outputs_are_in_target_units(client: TestClient, train) -> None:  # type: ignore[no-untyped-def]
    import numpy as np
    import onnxruntime

    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 2))
    y = 100 + 30 * x[:, 0] - 10 * x[:, 1]
    csv = "a,b,y\n" + "".join(f"{a:.4f},{b:.4f},{t:.4f}\n" for (a, b), t in zip(x, y, strict=True))
    job = train(
        "reg.csv",
        csv.encode(),
        target="y",
        model={"type": "linear_regression"},
        training={**TRAINING, "learning_rate": 0.1},
    )
    content = client.get(
        f"/v1/models/{job['model_id']}/artifact", params={"format": "onnx"}
    ).content
    rows = [{"a": 0.5, "b": -1.0}, {"a": None, "b": 2.0}]
    (values,) = onnxruntime.InferenceSession(content).run(
        ["output"], {"numeric": np.array([[0.5, -1.0], [np.nan, 2.0]], np.float32)}
    )
    api = client.post(f"/v1/models/{job['model_id']}/predict", json={"inputs": rows}).json()
    np.testing.assert_allclose(values, api["predictions"], rtol=1e-5)
    assert abs(api["predictions"][0] - (100 + 15 + 10)) < 2.0
