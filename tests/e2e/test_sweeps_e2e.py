"""A sweep on the real system (uvicorn, a Celery worker with its prefork pool, beat,
Redis, PostgreSQL): its step runs as a task after each stage of a trial, pruned trials'
jobs are cancelled on the workers, the stream follows it to its end, and the best
model serves predictions."""

import json

import pytest
from e2e_system import System
from sample_data import breast_cancer_table, table_to_csv

pytestmark = pytest.mark.e2e

TABLE = breast_cancer_table()
DONE = {"succeeded", "failed", "cancelled"}


def test_a_sweep_on_the_workers_prunes_streams_and_delivers_its_best(system: System) -> None:
    response = system.client.post(
        "/v1/datasets", files={"file": ("cancer.csv", table_to_csv(TABLE))}
    )
    dataset = system.wait_for(f"/v1/datasets/{response.json()['id']}", {"ready", "failed"})
    body = {
        "template": {
            "dataset_id": dataset["id"],
            "target": "diagnosis",
            "model": {"type": "logistic_regression"},
            "distribution": {"shards": 2},
            "training": {"rounds": 8, "seed": 1, "early_stopping": None},
        },
        "space": {"training.learning_rate": {"log_uniform": [1e-6, 0.3]}},
        "metric": "accuracy",
        "sampler": "random",
        "pruner": "median",
        "max_trials": 8,
        "parallelism": 2,
        "seed": 0,
    }
    created = system.client.post("/v1/sweeps", json=body)
    assert created.status_code == 201, created.text
    sweep_id = created.json()["id"]
    streamed: list[dict] = []
    with system.client.stream(
        "GET",
        f"/v1/sweeps/{sweep_id}/events",
        headers={"Accept": "text/event-stream"},
        timeout=240,
    ) as stream:
        for line in stream.iter_lines():
            if line.startswith("data: "):
                streamed.append(json.loads(line[len("data: ") :]))
    # The stream ended because the sweep did.
    sweep = system.client.get(f"/v1/sweeps/{sweep_id}").json()
    assert sweep["status"] == "succeeded", sweep
    assert streamed[-1]["type"] == "sweep.status" and streamed[-1]["data"]["status"] == "succeeded"
    listed = system.client.get(f"/v1/sweeps/{sweep_id}/events?limit=1000").json()["data"]
    assert [e["id"] for e in streamed] == [e["id"] for e in listed]
    states = [t["state"] for t in sweep["trials"]]
    assert len(states) == 8 and set(states) <= {"done", "pruned"} and "pruned" in states, sweep
    for trial in sweep["trials"]:
        job = system.client.get(f"/v1/jobs/{trial['job_id']}").json()
        assert job["sweep_id"] == sweep_id
        assert job["status"] == ("succeeded" if trial["state"] == "done" else "cancelled")
        if trial["state"] == "pruned":
            rounds = system.client.get(f"/v1/jobs/{trial['job_id']}/metrics").json()["data"]
            assert len(rounds) < 8
    best = sweep["best_trial"]
    assert best["score"] == max(t["score"] for t in sweep["trials"] if t["state"] == "done")
    model = system.client.get(f"/v1/models/{sweep['model_id']}").json()
    assert model["status"] == "deployed" and model["job_id"] == best["job_id"]
    inputs = TABLE.drop_columns(["diagnosis"]).slice(0, 3).to_pylist()
    answer = system.client.post(f"/v1/models/{sweep['model_id']}/predict", json={"inputs": inputs})
    assert answer.status_code == 200, answer.text
    chart = system.client.get(f"/v1/sweeps/{sweep_id}/trials.png")
    assert chart.status_code == 200 and chart.content.startswith(b"\x89PNG")
