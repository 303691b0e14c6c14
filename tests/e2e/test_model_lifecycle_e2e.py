"""Models that improve over time, on the real system (uvicorn, a Celery worker, Redis,
PostgreSQL): a retrain on more data beats the champion and is promoted; a worse one is
kept as a version and not promoted; predict by the champion alias follows; a warm start
from the champion is ahead of a cold start after one round."""

import pytest
from e2e_system import System
from sample_data import breast_cancer_table, table_to_csv

pytestmark = pytest.mark.e2e

TABLE = breast_cancer_table()
GATE = {"beats": "champion", "metric": "accuracy", "by": 0.005}
STRONG = {"rounds": 6, "learning_rate": 0.1, "seed": 2}
WEAK = {"rounds": 1, "learning_rate": 1e-5, "local_epochs": 1, "seed": 2}
DONE = {"succeeded", "failed", "cancelled"}


def _upload(system: System, rows: int) -> str:
    data = table_to_csv(TABLE.slice(0, rows))
    response = system.client.post("/v1/datasets", files={"file": ("cancer.csv", data)})
    assert response.status_code == 201, response.text
    dataset = system.wait_for(f"/v1/datasets/{response.json()['id']}", {"ready", "failed"})
    assert dataset["status"] == "ready", dataset
    return str(dataset["id"])


def _train(system: System, dataset_id: str, training: dict, **extra: object) -> dict:
    spec = {
        "dataset_id": dataset_id,
        "target": "diagnosis",
        "model_name": "cancer-e2e",
        "distribution": {"shards": 2},
        "training": training,
        **extra,
    }
    created = system.client.post("/v1/jobs", json=spec)
    assert created.status_code == 201, created.text
    job = system.wait_for(f"/v1/jobs/{created.json()['id']}", DONE)
    assert job["status"] == "succeeded", job
    return dict(system.client.get(f"/v1/models/{job['model_id']}").json())


def _champion(system: System) -> int | None:
    aliases = system.client.get("/v1/model-names/cancer-e2e").json()["aliases"]
    return next((a["version"] for a in aliases if a["alias"] == "champion"), None)


def _predicted_by_champion(system: System) -> str:
    inputs = TABLE.drop_columns(["diagnosis"]).slice(0, 5).to_pylist()
    answer = system.client.post(
        "/v1/model-names/cancer-e2e/aliases/champion/predict", json={"inputs": inputs}
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["model_id"])


def test_retrains_are_promoted_only_when_they_beat_the_champion(system: System) -> None:
    first_rows, all_rows = _upload(system, 200), _upload(system, TABLE.num_rows)
    v1 = _train(system, first_rows, WEAK, deploy_if=GATE)
    assert (v1["version"], v1["status"], _champion(system)) == (1, "deployed", 1)
    assert _predicted_by_champion(system) == v1["id"]

    v2 = _train(system, all_rows, STRONG, deploy_if=GATE)
    comparison = v2["comparison"]
    assert comparison["passed"] is True and comparison["champion_version"] == 1
    assert comparison["candidate"] >= comparison["champion"] + 0.005
    assert (v2["status"], _champion(system)) == ("deployed", 2)
    # The alias moved in the worker; the API's cached resolution follows at once.
    assert _predicted_by_champion(system) == v2["id"]

    v3 = _train(system, all_rows, WEAK, deploy_if=GATE)
    assert (v3["version"], v3["status"]) == (3, "rejected")
    assert v3["comparison"]["passed"] is False and v3["comparison"]["champion_version"] == 2
    assert _champion(system) == 2 and _predicted_by_champion(system) == v2["id"]
    versions = system.client.get("/v1/model-names/cancer-e2e").json()["versions"]
    assert [(v["version"], v["aliases"]) for v in versions] == [(1, []), (2, ["champion"]), (3, [])]

    cold = _train(system, all_rows, {**WEAK, "learning_rate": 0.01})
    warm = _train(
        system,
        all_rows,
        {**WEAK, "learning_rate": 0.01},
        init_from={"model": "cancer-e2e@champion"},
    )
    assert warm["metrics"]["accuracy"] > cold["metrics"]["accuracy"], (warm, cold)
