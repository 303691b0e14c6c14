"""A server bug answers a JSON 500 on a connection that stays usable, against a real
uvicorn; JSON the parser gives up on is a 400 `invalid_body` on every route."""

from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from live_server import serve

from app.config import Settings
from app.main import create_app

JSON = {"content-type": "application/json"}


class Boom(Exception):
    """An error no handler knows, as a bug would raise."""


@pytest.fixture
def live_url(settings: Settings) -> Iterator[str]:
    app: FastAPI = create_app(settings)

    # Test-only routes: one fails as a bug would, one tells which connection it came on.
    @app.get("/test/boom")
    def boom() -> None:
        raise Boom("a bug")

    @app.get("/test/peer")
    def peer(request: Request) -> dict[str, int]:
        assert request.client is not None
        return {"port": request.client.port}

    with serve(app) as url:
        yield url


def test_after_a_500_the_keep_alive_connection_still_answers(live_url: str) -> None:
    with httpx.Client(base_url=live_url, limits=httpx.Limits(max_connections=1)) as http:
        before = http.get("/test/peer").json()["port"]
        failed = http.get("/test/boom")
        after = http.get("/test/peer")
    assert failed.status_code == 500
    assert failed.json() == {
        "error": {
            "type": "api_error",
            "code": "server_error",
            "message": "The server failed to handle the request.",
            "param": None,
        }
    }
    assert failed.headers.get("connection") != "close"
    assert after.status_code == 200
    # The same client port: the request after the 500 reused the connection.
    assert after.json()["port"] == before


def test_a_500_is_logged_once_and_counted(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings)

    @app.get("/test/boom")
    def boom() -> None:
        raise Boom("a bug")

    with TestClient(app, raise_server_exceptions=True) as client:
        # raise_server_exceptions=True: nothing escapes the app for a test client to raise.
        response = client.get("/test/boom")
        metrics = client.get("/metrics").text
    assert response.status_code == 500
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == ["unhandled error"]
    assert 'method="GET",route="/test/boom",status="500"' in metrics


TOO_DEEP = "[" * 100_000 + "]" * 100_000
LONG_INT = "9" * 5000


@pytest.mark.parametrize(
    ("path", "body", "reason"),
    [
        ("/v1/jobs", TOO_DEEP, "nesting too deep"),
        ("/v1/jobs", '{"dataset_id": "ds_x", "target": "y", "training": {"seed": '
         + LONG_INT + "}}", "an integer too long to read"),
        # predict parses its own body with pydantic-core, which has limits of its own
        ("/v1/models/mdl_x/predict", TOO_DEEP, "nesting too deep"),
        ("/v1/models/mdl_x/predict", '{"inputs": [{"x": ' + LONG_INT + "}]}",
         "a number too long to read"),
    ],
)  # fmt: skip
def test_json_the_parser_gives_up_on_is_400_invalid_body(
    client: TestClient, path: str, body: str, reason: str
) -> None:
    response = client.post(path, content=body.encode(), headers=JSON)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_body"
    assert error["type"] == "invalid_request_error"
    assert reason in error["message"]
    assert error["param"] is None


def test_malformed_json_stays_422_invalid_json(client: TestClient) -> None:
    for path in ("/v1/jobs", "/v1/models/mdl_x/predict"):
        response = client.post(path, content=b'{"inputs": [', headers=JSON)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "invalid_json"
