"""Predict refuses what would answer NaN or Infinity: non-finite or overflowing numbers,
objects and arrays as text features, truncated Arrow bodies. Each refusal is a 422
naming the row and column, and every body, success or error, is strict JSON."""

import json
import math
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

ARROW = {"content-type": "application/vnd.apache.arrow.stream"}
JSON = {"content-type": "application/json"}
FLOAT32_MAX = float(np.finfo(np.float32).max)
TRAINING = {"rounds": 15, "local_epochs": 5, "batch_size": 16, "learning_rate": 0.1}
CITIES = ["oslo", "rome", "lima"]
MIXED_CSV = b"x,city,label\n" + b"".join(
    f"{i % 7},{CITIES[i % 3]},{'yes' if i % 7 + i % 3 > 4 else 'no'}\n".encode() for i in range(120)
)
FINE = {"x1": 0.5, "x2": 0.25, "x3": 0.75}


def _regression_csv() -> bytes:
    # y = x1 + x2 + x3 with features in [0, 1): the fitted weights (on standardized
    # features) are all near 0.58, so three features at 0.9 * float32's max add up
    # past it inside the network.
    x = np.random.default_rng(3).uniform(size=(240, 3))
    y = x.sum(axis=1)
    rows = "".join(f"{a:.5f},{b:.5f},{c:.5f},{t:.5f}\n" for (a, b, c), t in zip(x, y, strict=True))
    return ("x1,x2,x3,y\n" + rows).encode()


def _refuse_constant(name: str) -> None:
    raise AssertionError(f"the body holds {name}, which is not JSON")


def strict_json(response: httpx.Response) -> Any:
    return json.loads(response.text, parse_constant=_refuse_constant)


def arrow_body(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def preprocessing_of(client: TestClient, model_id: str) -> dict[str, Any]:
    """The saved preprocessing, from the safetensors header of the model's artifact."""
    content = client.get(f"/v1/models/{model_id}/artifact").content
    header_length = int.from_bytes(content[:8], "little")
    metadata = json.loads(content[8 : 8 + header_length])["__metadata__"]
    return dict(json.loads(metadata["preprocessing"]))


@pytest.fixture
def model_of(train_job: Callable[..., dict[str, Any]]) -> Callable[..., str]:
    def make(name: str, data: bytes, **spec: object) -> str:
        job = train_job(name, data, **spec)
        assert job["status"] == "succeeded", job
        return str(job["model_id"])

    return make


@pytest.fixture
def regression_model(model_of: Callable[..., str]) -> str:
    return model_of(
        "sum.csv",
        _regression_csv(),
        target="y",
        model={"type": "linear_regression"},
        training=TRAINING,
    )


def refused(
    client: TestClient, url: str, body: str | bytes, headers: dict[str, str] = JSON
) -> dict[str, Any]:
    response = client.post(url, content=body, headers=headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/json"
    error = strict_json(response)["error"]
    assert error["type"] == "invalid_request_error"
    return dict(error)


NON_FINITE_LITERALS = [
    ("Infinity", "Infinity"),
    ("-Infinity", "-Infinity"),
    ("NaN", "NaN"),
    ("1e309", "Infinity"),
    ("-1e309", "-Infinity"),
]


def test_json_numbers_that_are_not_finite_in_float32_are_refused(
    client: TestClient, regression_model: str
) -> None:
    url = f"/v1/models/{regression_model}/predict"
    for literal, said in NON_FINITE_LITERALS:
        # Many fine rows first: the column's fast path must still find and name row 40.
        rows = [json.dumps(FINE)] * 40 + [f'{{"x1": 0.5, "x2": {literal}, "x3": 0.1}}']
        error = refused(client, url, '{"inputs": [' + ", ".join(rows) + "]}")
        assert (error["code"], error["param"]) == ("invalid_input", "inputs.40.x2"), literal
        assert f"not {said}" in error["message"] and "finite" in error["message"], literal
    for literal in ("1e308", "-1e308", "1e39", "1" + "0" * 39):
        body = '{"inputs": [' + json.dumps(FINE) + f', {{"x1": {literal}, "x2": 0, "x3": 0}}]}}'
        error = refused(client, url, body)
        assert (error["code"], error["param"]) == ("invalid_input", "inputs.1.x1"), literal
        assert "float32" in error["message"], literal


def test_regression_answers_strict_json_or_names_the_row_at_fault(
    client: TestClient, regression_model: str
) -> None:
    url = f"/v1/models/{regression_model}/predict"
    numeric = {f["name"]: f for f in preprocessing_of(client, regression_model)["numeric"]}

    fine = client.post(url, json={"inputs": [FINE, {"x1": None, "x2": 1e30, "x3": 0}]})
    assert fine.status_code == 200, fine.text
    predictions = strict_json(fine)["predictions"]
    assert predictions[0] == pytest.approx(1.5, abs=0.3)
    assert predictions[1] > 1e29

    # Within float32 as sent, but not once standardized by the training std (< 1).
    within = 0.99 * FLOAT32_MAX
    assert (within - numeric["x3"]["mean"]) / numeric["x3"]["std"] > FLOAT32_MAX
    error = refused(client, url, json.dumps({"inputs": [FINE, {**FINE, "x3": within}]}))
    assert error["param"] == "inputs.1.x3" and "standardized" in error["message"]

    # Every feature fits float32 after standardizing; their weighted sum does not.
    huge = {name: spec["mean"] + 0.9 * FLOAT32_MAX * spec["std"] for name, spec in numeric.items()}
    error = refused(client, url, json.dumps({"inputs": [FINE, FINE, huge]}))
    assert (error["code"], error["param"]) == ("invalid_input", "inputs.2")
    assert "not a finite number" in error["message"]
    columns = {name: pa.array([0.5, value], pa.float64()) for name, value in huge.items()}
    error = refused(client, url, arrow_body(pa.table(columns)), ARROW)
    assert (error["code"], error["param"]) == ("invalid_input", "inputs.1")


def test_arrow_bodies_get_the_json_refusals(client: TestClient, regression_model: str) -> None:
    url = f"/v1/models/{regression_model}/predict"
    for value, said in ((math.inf, "Infinity"), (-math.inf, "-Infinity"), (math.nan, "NaN")):
        table = pa.table(
            {
                "x1": pa.array([0.5, None, 0.25]),
                "x2": pa.array([0.5, 0.5, value]),
                "x3": pa.array([0.1, 0.2, 0.3], pa.float32()),
            }
        )
        error = refused(client, url, arrow_body(table), ARROW)
        assert (error["code"], error["param"]) == ("invalid_input", "inputs.2.x2"), said
        assert f"not {said}" in error["message"]
    # A null is a missing value, not a non-finite one: imputed and answered.
    ok = client.post(url, content=arrow_body(table.slice(0, 2)), headers=ARROW)
    assert ok.status_code == 200, ok.text
    assert np.isfinite(pa.ipc.open_stream(ok.content).read_all()["prediction"]).all()

    # Rows are counted across the stream's record batches, and a null beside the bad
    # value (which reads as NaN in numpy) is not the one named.
    first = pa.table({"x1": [0.5, 0.5], "x2": pa.array([None, 0.5]), "x3": [0.1, 0.2]})
    second = pa.table({"x1": [0.5, 0.5], "x2": pa.array([None, math.nan]), "x3": [0.1, 0.2]})
    chunked = pa.concat_tables([first, second])
    assert chunked.column("x2").num_chunks == 2
    error = refused(client, url, arrow_body(chunked), ARROW)
    assert (error["code"], error["param"]) == ("invalid_input", "inputs.3.x2")
    assert "not NaN" in error["message"]

    past_float32 = pa.table({"x1": [0.5, 0.5], "x2": [0.5, -1e308], "x3": [0.5, 0.5]})
    error = refused(client, url, arrow_body(past_float32), ARROW)
    assert (error["code"], error["param"]) == ("invalid_input", "inputs.1.x2")
    assert "float32" in error["message"]


def test_truncated_or_ambiguous_arrow_bodies_are_refused(
    client: TestClient, regression_model: str
) -> None:
    url = f"/v1/models/{regression_model}/predict"
    body = arrow_body(pa.table({name: [0.5] * 300 for name in ("x1", "x2", "x3")}))
    # Cut inside the schema message, inside the record batch's metadata and its body
    # (pyarrow's OSError), and inside the end-of-stream marker.
    for cut in (4, 9, 100, 300, len(body) // 2, len(body) - 12, len(body) - 1):
        response = client.post(url, content=body[:cut], headers=ARROW)
        assert response.status_code == 422, (cut, response.text)
        error = strict_json(response)["error"]
        assert (error["code"], error["param"]) == ("invalid_arrow", None), cut
        assert "not an Arrow IPC stream" in error["message"]
    twice = pa.Table.from_arrays(
        [pa.array([0.5]), pa.array([0.5]), pa.array([0.5]), pa.array([0.5])],
        names=["x1", "x2", "x2", "x3"],
    )
    error = refused(client, url, arrow_body(twice), ARROW)
    assert (error["code"], error["param"]) == ("invalid_input", "inputs.x2")
    assert "2 times" in error["message"]


def test_text_features_take_text_numbers_booleans_and_nulls_only(
    client: TestClient, model_of: Callable[..., str]
) -> None:
    model_id = model_of("mixed.csv", MIXED_CSV, target="label", training=TRAINING)
    url = f"/v1/models/{model_id}/predict"
    for city, kind in (
        ('{"name": "oslo"}', "an object"),
        ("{}", "an object"),
        ('["oslo"]', "an array"),
    ):
        rows = ['{"x": 1, "city": "rome"}'] * 3 + [f'{{"x": 2, "city": {city}}}']
        error = refused(client, url, '{"inputs": [' + ", ".join(rows) + "]}")
        assert (error["code"], error["param"]) == ("invalid_input", "inputs.3.city"), city
        assert kind in error["message"], city
    for literal, said in (("Infinity", "Infinity"), ("NaN", "NaN"), ("-1e400", "-Infinity")):
        error = refused(client, url, f'{{"inputs": [{{"x": 1, "city": {literal}}}]}}')
        assert (error["code"], error["param"]) == ("invalid_input", "inputs.0.city"), literal
        assert f"not {said}" in error["message"], literal

    accepted = [{"x": 3, "city": c} for c in ("rome", 7, 2.5, True, None)]
    answer = client.post(url, json={"inputs": accepted})
    assert answer.status_code == 200, answer.text
    body = strict_json(answer)
    assert len(body["predictions"]) == 5
    assert all(0.0 <= p <= 1.0 for row in body["probabilities"] for p in row.values())

    error = refused(client, url, '{"inputs": [{"x": 1e308, "city": "rome"}]}')
    assert (error["code"], error["param"]) == ("invalid_input", "inputs.0.x")
    table = pa.table({"x": [1.0, 2.0], "city": pa.array([1.5, math.inf])})
    error = refused(client, url, arrow_body(table), ARROW)
    assert (error["code"], error["param"]) == ("invalid_input", "inputs.1.city")
