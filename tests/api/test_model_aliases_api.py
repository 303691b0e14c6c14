"""Aliases of named models: set, moved, deleted and audited; predict by alias resolves
through a per-process cache that every committed move invalidates, on every API process."""

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from dbsetup import issue_key
from fastapi.testclient import TestClient
from sample_data import iris_table, table_to_csv
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.main import create_app
from app.model_names.resolution import AliasGenerations
from app.tables import ApiKey, ModelAlias

IRIS = table_to_csv(iris_table())
SPEC: dict[str, Any] = {
    "target": "species",
    "distribution": {"shards": 2},
    "training": {"rounds": 3, "learning_rate": 0.1},
}
INPUTS = {"inputs": iris_table().drop_columns(["species"]).slice(0, 4).to_pylist()}


@pytest.fixture
def versions(train_job: Callable[..., dict[str, Any]]) -> list[dict[str, Any]]:
    """Three versions of `churn`: 1 and 2 deployed, 3 rejected by its gate."""
    jobs = [
        train_job("iris.csv", IRIS, **SPEC, model_name="churn"),
        train_job("iris.csv", IRIS, **{**SPEC, "training": {"rounds": 4, "seed": 7}},
                  model_name="churn"),
        train_job("iris.csv", IRIS, **SPEC, model_name="churn",
                  deploy_if={"metric": "accuracy", "min": 1.0001}),
    ]  # fmt: skip
    assert [j["status"] for j in jobs] == ["succeeded"] * 3
    return jobs


@pytest.fixture
def second_process(settings: Settings, api_key: str) -> Iterator[TestClient]:
    """Another API process: its own caches, the same SQL and Redis."""
    app = create_app(settings)
    headers = {"Authorization": f"Bearer {api_key}"}
    with TestClient(app, raise_server_exceptions=False, headers=headers) as other:
        yield other


def _predicted_by(client: TestClient, alias: str) -> str:
    answer = client.post(f"/v1/model-names/churn/aliases/{alias}/predict", json=INPUTS)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["model_id"])


def test_an_alias_serves_its_version_and_is_listed(
    client: TestClient, sessions: sessionmaker[Session], versions: list[dict[str, Any]]
) -> None:
    put = client.put("/v1/model-names/churn/aliases/staging", json={"version": 2})
    assert put.status_code == 200, put.text
    key_id = sessions().query(ApiKey.id).scalar()
    assert put.json()["version"] == 2 and put.json()["model_id"] == versions[1]["model_id"]
    assert put.json()["set_by"] == key_id and key_id.startswith("key_")

    by_alias = client.post("/v1/model-names/churn/aliases/staging/predict", json=INPUTS)
    by_version = client.post("/v1/model-names/churn/versions/2/predict", json=INPUTS)
    assert by_alias.status_code == 200, by_alias.text
    assert by_alias.json() == by_version.json()

    named = client.get("/v1/model-names/churn").json()
    assert [(a["alias"], a["version"]) for a in named["aliases"]] == [("staging", 2)]
    assert [v["aliases"] for v in named["versions"]] == [[], ["staging"], []]


def test_a_move_is_seen_by_the_next_request_on_every_process(
    client: TestClient, second_process: TestClient, versions: list[dict[str, Any]]
) -> None:
    client.put("/v1/model-names/churn/aliases/staging", json={"version": 1})
    assert _predicted_by(second_process, "staging") == versions[0]["model_id"]
    moved = client.put("/v1/model-names/churn/aliases/staging", json={"version": 2})
    assert moved.status_code == 200, moved.text
    assert _predicted_by(second_process, "staging") == versions[1]["model_id"]
    assert _predicted_by(client, "staging") == versions[1]["model_id"]
    removed = client.delete("/v1/model-names/churn/aliases/staging")
    assert removed.status_code == 200, removed.text
    gone = second_process.post("/v1/model-names/churn/aliases/staging/predict", json=INPUTS)
    assert (gone.status_code, gone.json()["error"]["param"]) == (404, "alias")


def test_resolution_is_cached_until_the_generation_moves(
    client: TestClient,
    settings: Settings,
    sessions: sessionmaker[Session],
    versions: list[dict[str, Any]],
) -> None:
    """A move made behind the API's back (no generation bump) is not seen: the alias is
    answered from memory; the bump that every API move makes is what invalidates it."""
    client.put("/v1/model-names/churn/aliases/staging", json={"version": 1})
    assert _predicted_by(client, "staging") == versions[0]["model_id"]
    with sessions.begin() as session:
        session.execute(update(ModelAlias).values(version=2, model_id=versions[1]["model_id"]))
    assert _predicted_by(client, "staging") == versions[0]["model_id"]
    with sessions() as session:
        tenant = session.query(ModelAlias.tenant_id).scalar()
    AliasGenerations(redis.Redis.from_url(settings.broker_url)).bump(tenant)
    assert _predicted_by(client, "staging") == versions[1]["model_id"]


def test_the_champion_is_moved_by_hand_only_with_a_reason_and_to_a_deployed_version(
    client: TestClient, versions: list[dict[str, Any]]
) -> None:
    no_reason = client.put("/v1/model-names/churn/aliases/champion", json={"version": 2})
    assert (no_reason.status_code, no_reason.json()["error"]["param"]) == (422, "reason")
    rejected = client.put(
        "/v1/model-names/churn/aliases/champion", json={"version": 3, "reason": "try it"}
    )
    assert rejected.status_code == 409, rejected.text
    assert rejected.json()["error"]["code"] == "version_not_deployed"
    promoted = client.put(
        "/v1/model-names/churn/aliases/champion", json={"version": 2, "reason": "v2 wins A/B"}
    )
    assert promoted.status_code == 200, promoted.text
    rolled_back = client.put(
        "/v1/model-names/churn/aliases/champion",
        json={"version": 1, "reason": "v2 mislabels returns"},
    )
    assert rolled_back.status_code == 200, rolled_back.text
    again = client.put(
        "/v1/model-names/churn/aliases/champion", json={"version": 1, "reason": "no-op"}
    )
    assert again.status_code == 200 and again.json()["reason"] == "v2 mislabels returns"
    assert client.delete("/v1/model-names/churn/aliases/champion").status_code == 422

    changes = client.get("/v1/model-names/churn/alias-changes").json()["data"]
    assert [(c["from_version"], c["to_version"], c["reason"]) for c in changes] == [
        (2, 1, "v2 mislabels returns"),
        (None, 2, "v2 wins A/B"),
    ]
    assert all(c["set_by"].startswith("key_") for c in changes)
    # A user's alias may name any version; predicting through it says why it cannot.
    assert (
        client.put("/v1/model-names/churn/aliases/canary", json={"version": 3}).status_code == 200
    )
    refused = client.post("/v1/model-names/churn/aliases/canary/predict", json=INPUTS)
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "model_not_deployed")


def test_an_aliased_model_is_not_deleted(
    client: TestClient, versions: list[dict[str, Any]]
) -> None:
    client.put("/v1/model-names/churn/aliases/staging", json={"version": 1})
    refused = client.delete(f"/v1/models/{versions[0]['model_id']}")
    assert refused.status_code == 409, refused.text
    assert "'staging'" in refused.json()["error"]["message"]
    client.delete("/v1/model-names/churn/aliases/staging", params={"reason": "retired"})
    assert client.delete(f"/v1/models/{versions[0]['model_id']}").status_code == 200
    changes = client.get("/v1/model-names/churn/alias-changes").json()["data"]
    assert (changes[0]["to_version"], changes[0]["reason"]) == (None, "retired")


def test_unknown_names_aliases_and_versions_are_named(
    client: TestClient, settings: Settings, versions: list[dict[str, Any]]
) -> None:
    cases = [
        (client.put("/v1/model-names/nope/aliases/staging", json={"version": 1}), 404, "name"),
        (client.put("/v1/model-names/churn/aliases/staging", json={"version": 9}), 404, "version"),
        (client.put("/v1/model-names/churn/aliases/staging", json={"version": 0}), 422, "version"),
        (client.put("/v1/model-names/churn/aliases/1bad", json={"version": 1}), 422, "alias"),
        (client.delete("/v1/model-names/churn/aliases/staging"), 404, "alias"),
        (client.post("/v1/model-names/churn/aliases/none/predict", json=INPUTS), 404, "alias"),
        (client.post("/v1/model-names/nope/aliases/none/predict", json=INPUTS), 404, "name"),
        (client.get("/v1/model-names/nope/alias-changes"), 404, "name"),
    ]
    for response, status, param in cases:
        assert (response.status_code, response.json()["error"]["param"]) == (status, param), (
            response.text
        )
    client.put("/v1/model-names/churn/aliases/staging", json={"version": 1})
    other = {"Authorization": f"Bearer {issue_key(settings.database_url, 'outsiders')}"}
    hidden = [
        client.put("/v1/model-names/churn/aliases/staging", json={"version": 2}, headers=other),
        client.post("/v1/model-names/churn/aliases/staging/predict", json=INPUTS, headers=other),
        client.get("/v1/model-names/churn/alias-changes", headers=other),
    ]
    assert [r.status_code for r in hidden] == [404, 404, 404]
    assert _predicted_by(client, "staging") == versions[0]["model_id"]
