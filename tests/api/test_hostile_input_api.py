"""Hostile bodies get a 4xx error object, never a 500."""

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app

JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("[" * 100_000 + "]" * 100_000, "invalid_body"),  # nesting past the parser's depth
        ('{"dataset_id": "ds_x", "target": "y", "training": {"seed": ' + "9" * 5000 + "}}",
         "invalid_body"),  # an integer too long to parse
        ('{"dataset_id": "ds_x", "target": "y", "training": {"learning_rate": 1e400}}',
         "invalid_request"),  # overflows to infinity
        ('{"dataset_id": "ds_x", "target": "y", "training": {"learning_rate": NaN}}',
         "invalid_request"),
        ('{"dataset_id": 5, "target": ["y"]}', "invalid_request"),
        ("\x00\x01binary", "invalid_json"),
    ],
)  # fmt: skip
def test_hostile_job_bodies_are_4xx(client: TestClient, body: str, code: str) -> None:
    response = client.post("/v1/jobs", content=body.encode(), headers=JSON)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]["code"] == code


def test_nan_is_named_as_such(client: TestClient) -> None:
    body = '{"dataset_id": "ds_x", "target": "y", "training": {"learning_rate": NaN}}'
    response = client.post("/v1/jobs", content=body.encode(), headers=JSON)
    assert response.json()["error"]["param"] == "training.learning_rate"
    assert "finite" in response.json()["error"]["message"]


def test_oversized_json_body_is_413_before_parsing(settings: Settings, api_key: str) -> None:
    small = settings.model_copy(update={"max_json_body_bytes": 1000})
    headers = {"Authorization": f"Bearer {api_key}"}
    with TestClient(create_app(small), headers=headers) as client:
        declared = client.post("/v1/jobs", content=b"{" + b" " * 2000 + b"}", headers=JSON)

        def chunks():  # type: ignore[no-untyped-def]
            yield b'{"inputs": ['
            for _ in range(300):
                yield b'{"a": 1},'
            yield b'{"a": 1}]}'

        streamed = client.post("/v1/models/mdl_x/predict", content=chunks(), headers=JSON)
        upload = client.post(
            "/v1/datasets", files={"file": ("seed.csv", b"a,b\n" + b"1,2\n" * 400)}
        )
    assert declared.status_code == streamed.status_code == 413
    assert declared.json()["error"]["code"] == "body_too_large"
    assert upload.status_code == 201  # uploads stream under their own, larger limit
