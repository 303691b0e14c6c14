"""Predict with an Arrow IPC stream: columns in, columns out, the same answers and the
same errors as JSON records."""

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from sample_data import iris_table, table_to_csv

from app.config import Settings

ARROW = {"content-type": "application/vnd.apache.arrow.stream"}
TRAINING = {"rounds": 10, "local_epochs": 5, "batch_size": 16, "learning_rate": 0.05}
CITIES = ["oslo", "rome", "lima"]
MIXED_CSV = b"x,city,label\n" + b"".join(
    f"{i % 7},{CITIES[i % 3]},{'yes' if i % 7 + i % 3 > 4 else 'no'}\n".encode() for i in range(120)
)


def arrow_body(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def read_arrow(content: bytes) -> pa.Table:
    return pa.ipc.open_stream(content).read_all()


@pytest.fixture
def model_of(train_job: Callable[..., dict[str, Any]]) -> Callable[..., str]:
    def make(name: str, data: bytes, **spec: object) -> str:
        job = train_job(name, data, **spec)
        assert job["status"] == "succeeded", job
        return str(job["model_id"])

    return make


def test_arrow_predictions_equal_json_predictions(
    client: TestClient, model_of: Callable[..., str]
) -> None:
    model_id = model_of("iris.csv", table_to_csv(iris_table()), target="species", training=TRAINING)
    url = f"/v1/models/{model_id}/predict"
    unlabeled = iris_table().drop_columns(["species"])
    response = client.post(url, content=arrow_body(unlabeled), headers=ARROW)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == ARROW["content-type"]
    table = read_arrow(response.content)
    assert table.column_names == [
        "row_id", "prediction", "probability_setosa", "probability_versicolor",
        "probability_virginica",
    ]  # fmt: skip
    online = client.post(url, json={"inputs": unlabeled.to_pylist()}).json()
    assert table.column("row_id").to_pylist() == list(range(150))
    assert table.column("prediction").to_pylist() == online["predictions"]
    for name in ("setosa", "versicolor", "virginica"):
        expected = [p[name] for p in online["probabilities"]]
        assert table.column(f"probability_{name}").to_pylist() == pytest.approx(expected)


def test_text_features_take_text_numbers_and_nulls_as_json_does(
    client: TestClient, model_of: Callable[..., str]
) -> None:
    model_id = model_of("mixed.csv", MIXED_CSV, target="label", training=TRAINING)
    url = f"/v1/models/{model_id}/predict"
    records = [
        {"x": 3, "city": "rome"},
        {"x": None, "city": "unseen"},
        {"x": 6.5, "city": None},
        {"x": True, "city": 7},  # a number for a text feature: its text form
    ]
    as_json = client.post(url, json={"inputs": records}).json()
    columns = pa.table(
        {
            "x": pa.array([3, None, 6.5, 1.0], pa.float64()),
            "city": pa.array(["rome", "unseen", None, "7"]),
        }
    )
    as_arrow = read_arrow(client.post(url, content=arrow_body(columns), headers=ARROW).content)
    assert as_arrow.column("prediction").to_pylist() == as_json["predictions"]
    numbers_as_city = pa.table({"x": pa.array([1, 2]), "city": pa.array([7, 8])})
    answered = client.post(url, content=arrow_body(numbers_as_city), headers=ARROW)
    assert answered.status_code == 200, answered.text


def test_arrow_errors_name_the_column_or_the_body(
    client: TestClient, model_of: Callable[..., str], settings: Settings
) -> None:
    model_id = model_of("mixed.csv", MIXED_CSV, target="label", training=TRAINING)
    url = f"/v1/models/{model_id}/predict"

    def error(body: bytes, status: int = 422) -> dict[str, Any]:
        response = client.post(url, content=body, headers=ARROW)
        assert response.status_code == status, response.text
        return dict(response.json()["error"])

    missing = error(arrow_body(pa.table({"x": [1.0]})))
    assert (missing["code"], missing["param"]) == ("invalid_input", "inputs.city")
    wrong = error(arrow_body(pa.table({"x": ["1.0"], "city": ["oslo"]})))
    assert wrong["param"] == "inputs.x" and "string" in wrong["message"]
    nested = error(arrow_body(pa.table({"x": [1.0], "city": [["oslo"]]})))
    assert nested["param"] == "inputs.city"
    assert error(b"not arrow at all")["code"] == "invalid_arrow"
    empty = pa.table({"x": pa.array([], pa.float64()), "city": pa.array([], pa.string())})
    assert error(arrow_body(empty))["param"] == "inputs"
    too_many = settings.max_predict_rows + 1
    big = pa.table({"x": [1.0] * too_many, "city": ["oslo"] * too_many})
    assert error(arrow_body(big), 413)["code"] == "too_many_rows"
