from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_checks_database_and_redis(client: TestClient) -> None:
    body = client.get("/readyz").json()
    # A beat that has not ticked yet is not called missing before it had time to tick.
    assert body == {
        "status": "ready",
        "checks": {"database": "ok", "redis": "ok", "beat": "ok"},
    }


def test_readyz_is_503_when_redis_is_down(settings: Settings) -> None:
    broken = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    with TestClient(create_app(broken)) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert "redis" in response.json()["error"]["message"]


def test_unknown_route_is_an_error_object(client: TestClient) -> None:
    response = client.get("/v1/nothing")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"


def test_operation_ids_are_unique_and_readable(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    ids = [op["operationId"] for path in spec["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids))
    assert "datasets-create" in ids and "models-predict" in ids
