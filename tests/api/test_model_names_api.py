"""Named models: each succeeded job with `model_name` adds the next version, rejected
ones included; names are per tenant; racing jobs get consecutive versions."""

import threading
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest
from dbsetup import issue_key
from fastapi.testclient import TestClient
from sample_data import iris_table, table_to_csv
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import session_scope
from app.model_names.repository import ModelNameRepository
from app.model_names.service import add_version
from app.registry.repository import ModelRepository
from app.tenancy.scope import SYSTEM

IRIS = table_to_csv(iris_table())
SPEC: dict[str, Any] = {
    "target": "species",
    "distribution": {"shards": 2},
    "training": {"rounds": 3, "learning_rate": 0.1},
}


def _train(train_job: Callable[..., dict[str, Any]], **spec: Any) -> dict[str, Any]:
    job = train_job("iris.csv", IRIS, **{**SPEC, **spec})
    assert job["status"] == "succeeded", job
    return job


def test_each_job_adds_the_next_version(
    client: TestClient, train_job: Callable[..., dict[str, Any]]
) -> None:
    first = _train(train_job, model_name="iris-species")
    second = _train(train_job, model_name="iris-species", training={"rounds": 4})
    named = client.get("/v1/model-names/iris-species")
    assert named.status_code == 200, named.text
    body = named.json()
    assert (body["object"], body["name"], body["latest_version"]) == (
        "model_name",
        "iris-species",
        2,
    )
    assert [(v["version"], v["model_id"], v["job_id"]) for v in body["versions"]] == [
        (1, first["model_id"], first["id"]),
        (2, second["model_id"], second["id"]),
    ]
    for version in body["versions"]:
        model = client.get(f"/v1/models/{version['model_id']}").json()
        assert (model["model_name"], model["version"]) == ("iris-species", version["version"])
        assert version["metrics"] == model["metrics"] and "accuracy" in version["metrics"]
        assert version["status"] == model["status"] == "deployed"
    events = client.get(f"/v1/jobs/{second['id']}/events?limit=100").json()["data"]
    versioned = [e for e in events if e["type"] == "model.versioned"]
    assert len(versioned) == 1 and "version 2 of 'iris-species'" in versioned[0]["message"]

    listed = client.get("/v1/model-names").json()
    assert [(n["name"], n["latest_version"]) for n in listed["data"]] == [("iris-species", 2)]
    assert listed["data"][0]["id"] == body["id"]


def test_a_job_without_a_name_adds_no_version(
    client: TestClient, train_job: Callable[..., dict[str, Any]]
) -> None:
    job = _train(train_job)
    model = client.get(f"/v1/models/{job['model_id']}").json()
    assert (model["model_name"], model["version"]) == (None, None)
    assert client.get("/v1/model-names").json()["data"] == []
    missing = client.get("/v1/model-names/never-trained")
    assert missing.status_code == 404
    assert missing.json()["error"]["param"] == "name"
    assert "never-trained" in missing.json()["error"]["message"]


def test_a_rejected_model_is_still_a_version(
    client: TestClient, train_job: Callable[..., dict[str, Any]]
) -> None:
    _train(train_job, model_name="gated")
    rejected = _train(
        train_job, model_name="gated", deploy_if={"metric": "accuracy", "min": 1.0001}
    )
    versions = client.get("/v1/model-names/gated").json()["versions"]
    assert [(v["version"], v["status"]) for v in versions] == [(1, "deployed"), (2, "rejected")]
    assert versions[1]["model_id"] == rejected["model_id"]
    assert versions[1]["gate"]["passed"] is False


@pytest.mark.parametrize("name", ["", "-leading-dash", "../up", "with space", "a" * 65, "é"])
def test_bad_names_are_refused_naming_the_field(
    client: TestClient, ready_dataset: Callable[[str, bytes], str], name: str
) -> None:
    dataset_id = ready_dataset("iris.csv", IRIS)
    response = client.post("/v1/jobs", json={"dataset_id": dataset_id, **SPEC, "model_name": name})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["param"] == "model_name"


def test_names_belong_to_their_tenant(
    client: TestClient, settings: Settings, train_job: Callable[..., dict[str, Any]]
) -> None:
    _train(train_job, model_name="shared-name")
    other = {"Authorization": f"Bearer {issue_key(settings.database_url, 'outsiders')}"}
    assert client.get("/v1/model-names/shared-name", headers=other).status_code == 404
    assert client.get("/v1/model-names", headers=other).json()["data"] == []


def test_racing_jobs_get_consecutive_versions(
    client: TestClient, sessions: sessionmaker[Session], train_job: Callable[..., dict[str, Any]]
) -> None:
    """The first registration holds the name's row until it commits; the second,
    started meanwhile, waits for it instead of taking the same number or failing."""
    model_ids = [_train(train_job)["model_id"] for _ in range(2)]
    holding, release = threading.Event(), threading.Event()
    versions: dict[str, int] = {}
    errors: list[BaseException] = []

    def register(model_id: str, hold: bool) -> None:
        try:
            with session_scope(sessions) as session:
                model = ModelRepository(session, SYSTEM).get(model_id)
                assert model is not None
                versions[model_id] = add_version(session, model, "raced")
                if hold:
                    holding.set()
                    release.wait(10)
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    first = threading.Thread(target=register, args=(model_ids[0], True))
    first.start()
    assert holding.wait(10)
    second = threading.Thread(target=register, args=(model_ids[1], False))
    second.start()
    second.join(0.5)
    assert second.is_alive(), "the second registration did not wait for the first"
    release.set()
    first.join(10)
    second.join(10)
    assert errors == []
    assert versions == {model_ids[0]: 1, model_ids[1]: 2}
    with session_scope(sessions) as session:
        named = ModelNameRepository(session, SYSTEM).by_name("raced")
        assert named is not None and named.latest_version == 2
    listed = client.get("/v1/model-names/raced").json()["versions"]
    assert [v["model_id"] for v in listed] == model_ids


ARROW = {"content-type": "application/vnd.apache.arrow.stream"}


def _records(n: int) -> list[dict[str, float]]:
    table = iris_table().drop_columns(["species"]).slice(0, n)
    return table.to_pylist()


def _arrow_body(records: list[dict[str, float]]) -> bytes:
    table = pa.Table.from_pylist(records)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def test_predict_with_a_version_answers_as_its_model(
    client: TestClient, settings: Settings, train_job: Callable[..., dict[str, Any]]
) -> None:
    first = _train(train_job, model_name="served")
    second = _train(train_job, model_name="served", training={"rounds": 5, "seed": 3})
    records = {"inputs": _records(5)}
    for version, job in ((1, first), (2, second)):
        answer = client.post(f"/v1/model-names/served/versions/{version}/predict", json=records)
        assert answer.status_code == 200, answer.text
        direct = client.post(f"/v1/models/{job['model_id']}/predict", json=records).json()
        assert answer.json() == direct and answer.json()["model_id"] == job["model_id"]

    arrow = client.post(
        "/v1/model-names/served/versions/2/predict", content=_arrow_body(_records(3)), headers=ARROW
    )
    assert arrow.status_code == 200, arrow.text
    table = pa.ipc.open_stream(arrow.content).read_all()
    direct = client.post(f"/v1/models/{second['model_id']}/predict", json={"inputs": _records(3)})
    assert table.column("prediction").to_pylist() == direct.json()["predictions"]

    no_version = client.post("/v1/model-names/served/versions/3/predict", json=records)
    assert no_version.status_code == 404
    assert no_version.json()["error"]["param"] == "version"
    no_name = client.post("/v1/model-names/unknown/versions/1/predict", json=records)
    assert (no_name.status_code, no_name.json()["error"]["param"]) == (404, "name")
    # Below 1, or past SQL's INTEGER (which must not reach the database as a 500).
    for bad in ("0", str(2**31), "1248814288847305688962039808"):
        refused = client.post(f"/v1/model-names/served/versions/{bad}/predict", json=records)
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.json()["error"]["param"] == "version"
    other = {"Authorization": f"Bearer {issue_key(settings.database_url, 'outsiders')}"}
    hidden = client.post("/v1/model-names/served/versions/1/predict", json=records, headers=other)
    assert hidden.status_code == 404


def test_a_rejected_version_does_not_serve(
    client: TestClient, train_job: Callable[..., dict[str, Any]]
) -> None:
    _train(train_job, model_name="strict", deploy_if={"metric": "accuracy", "min": 1.0001})
    refused = client.post("/v1/model-names/strict/versions/1/predict", json={"inputs": _records(1)})
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "model_not_deployed"
