"""A NUL character (which PostgreSQL's text cannot hold) anywhere a client's text could
reach SQL is a 422 naming where it was, never a 500, on both databases.

The schemathesis run found the first: a job spec whose `dataset_id` held one."""

import re

import pytest
from fastapi.testclient import TestClient

from app.config import Settings


def _operations_with_path_params(client: TestClient) -> list[tuple[str, str]]:
    paths = client.get("/openapi.json").json()["paths"]
    return [
        (method, re.sub(r"\{[^}]+\}", "a%00b", path))
        for path, operations in paths.items()
        if path.startswith("/v1/") and "{" in path
        for method in operations
    ]


def test_every_path_id_with_a_nul_is_a_422(client: TestClient) -> None:
    operations = _operations_with_path_params(client)
    assert len(operations) > 15
    for method, path in operations:
        response = client.request(method.upper(), path, json={})
        assert response.status_code == 422, (method, path, response.text)
        assert response.json()["error"]["param"] == "path"


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/models", "/v1/datasets", "/v1/model-names"])
def test_a_query_parameter_with_a_nul_is_named(client: TestClient, path: str) -> None:
    response = client.get(f"{path}?limit=2&after=ds_%00x")
    assert response.status_code == 422, response.text
    assert response.json()["error"]["param"] == "after"
    assert "NUL" in response.json()["error"]["message"]


def test_a_plain_query_is_untouched(client: TestClient) -> None:
    assert client.get("/v1/jobs?limit=2&after=job_%2500x").status_code == 200


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"dataset_id": "ds_\x00", "target": "y"}, "dataset_id"),
        ({"dataset_id": "ds_1", "target": "y\x00"}, "target"),
        ({"dataset_id": "ds_1", "target": "y", "features": ["a", "b\x00"]}, "features"),
        ({"dataset_id": "ds_1", "target": "y", "model_name": "m\x00"}, "model_name"),
    ],
)
def test_a_job_spec_string_with_a_nul_is_named(
    client: TestClient, body: dict[str, object], param: str
) -> None:
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["param"] == param
    assert client.get("/v1/jobs").json()["data"] == []


def test_an_import_url_with_a_nul_is_named(client: TestClient) -> None:
    response = client.post("/v1/datasets", json={"url": "s3://datasets/a\x00.csv"})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["param"] == "url"


def test_an_upload_name_with_a_nul_stores_nothing(client: TestClient, settings: Settings) -> None:
    response = client.post(
        "/v1/datasets", files={"file": ("a.csv", b"a,b\n1,2\n")}, data={"name": "x\x00y"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["param"] == "name"
    assert client.get("/v1/datasets").json()["data"] == []
    root = settings.blob_dir
    assert not root.exists() or not [p for p in root.rglob("*") if p.is_file()]
