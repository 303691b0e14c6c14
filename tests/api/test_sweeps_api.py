"""Sweeps: trials as jobs on one preparation of the data, asked by optuna, pruned on
their validation loss, the best one delivered; run in-process step by step as the
worker runs them (`inprocess.run_sweep`)."""

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from inprocess import run_sweep
from sample_data import breast_cancer_table, iris_table, table_to_csv
from sqlalchemy.orm import Session, sessionmaker

from app.jobs import sharding
from app.paramstore import ParamStore
from app.storage import BlobStore
from app.tables import Job

IRIS = table_to_csv(iris_table())
CANCER = table_to_csv(breast_cancer_table())
MakeDataset = Callable[[str, bytes], str]


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every job whose shards were written from the dataset: its preparations."""
    written: list[str] = []
    real = sharding.build_shards

    def counted(*args: Any, **kwargs: Any) -> Any:
        written.append(kwargs["job_id"])
        return real(*args, **kwargs)

    monkeypatch.setattr("app.jobs.stages.prepare.build_shards", counted)
    return written


def _sweep_body(dataset_id: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "template": {
            "dataset_id": dataset_id,
            "target": "species",
            "model": {"type": "mlp", "hidden_layers": [8]},
            "distribution": {"shards": 2},
            "training": {"rounds": 4, "seed": 1},
        },
        "space": {
            "training.learning_rate": {"log_uniform": [1e-3, 0.3]},
            "model.hidden_layers": {"choice": [[4], [16]]},
            "training.l2": {"uniform": [0, 0.01]},
            "training.rounds": {"int": [3, 6], "step": 3},
        },
        "metric": "accuracy",
        "max_trials": 5,
        "parallelism": 2,
        "seed": 0,
    }
    body.update(changes)
    return body


def _run(
    client: TestClient,
    sessions: sessionmaker[Session],
    store: BlobStore,
    params: ParamStore,
    body: dict[str, Any],
    **kwargs: Any,
) -> dict[str, Any]:
    created = client.post("/v1/sweeps", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "running" and created.json()["trials"] == []
    run_sweep(sessions, store, params, created.json()["id"], **kwargs)
    return dict(client.get(f"/v1/sweeps/{created.json()['id']}").json())


def test_a_sweep_trains_its_trials_on_one_preparation_and_deploys_the_best(
    client: TestClient,
    ready_dataset: MakeDataset,
    sessions: sessionmaker[Session],
    store: BlobStore,
    params: ParamStore,
    builds: list[str],
) -> None:
    dataset_id = ready_dataset("iris.csv", IRIS)
    sweep = _run(client, sessions, store, params, _sweep_body(dataset_id, pruner="none"))
    assert sweep["status"] == "succeeded", sweep
    trials = sweep["trials"]
    assert [t["number"] for t in trials] == [0, 1, 2, 3, 4]
    assert {t["state"] for t in trials} == {"done"}
    # One preparation for the whole sweep: every other trial trains on trial 0's shards.
    assert builds == [trials[0]["job_id"]]
    with sessions() as session:
        jobs = {t["job_id"]: session.query(Job).filter_by(id=t["job_id"]).one() for t in trials}
    assert all(jobs[t["job_id"]].shards_from == trials[0]["job_id"] for t in trials[1:])
    assert all(job.sweep_id == sweep["id"] for job in jobs.values())
    # The values drawn are in the space and reach the trial's job spec.
    for trial in trials:
        drawn = trial["params"]
        assert 1e-3 <= drawn["training.learning_rate"] <= 0.3
        assert drawn["model.hidden_layers"] in ([4], [16])
        assert drawn["training.rounds"] in (3, 6)
        spec = client.get(f"/v1/jobs/{trial['job_id']}").json()["spec"]
        assert spec["training"]["learning_rate"] == drawn["training.learning_rate"]
        assert spec["model"]["hidden_layers"] == drawn["model.hidden_layers"]
        assert spec["training"]["rounds"] == drawn["training.rounds"]
        assert spec.get("model_name") is None and spec.get("deploy_if") is None
        # The score is the validation accuracy of the round the job kept.
        job = jobs[trial["job_id"]]
        kept = job.best_round if job.best_round is not None else job.current_round
        rounds = client.get(f"/v1/jobs/{trial['job_id']}/metrics").json()["data"]
        assert (
            trial["score"]
            == next(r for r in rounds if r["round"] == kept)["val_metrics"]["accuracy"]
        )
        assert trial["val_losses"] == [r["val_loss"] for r in rounds]
        assert trial["seconds"] >= 0 and trial["model_id"] is not None
    best = max(trials, key=lambda t: (t["score"], -t["number"]))
    assert sweep["best_trial"]["number"] == best["number"]
    assert sweep["best_trial"]["params"] == best["params"]
    assert sweep["best_trial"]["score"] == best["score"]
    assert sweep["model_id"] == sweep["best_trial"]["model_id"] == best["model_id"]
    assert sweep["final_job_id"] is None
    # Only the best trial's model is deployed; the others stay registered, undeployed.
    statuses = {t["number"]: client.get(f"/v1/models/{t['model_id']}").json()["status"]
                for t in trials}  # fmt: skip
    assert statuses[best["number"]] == "deployed"
    assert {s for n, s in statuses.items() if n != best["number"]} == {"undeployed"}
    predicted = client.post(
        f"/v1/models/{sweep['model_id']}/predict",
        json={"inputs": [{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4,
                           "petal_width": 0.2}]},
    )  # fmt: skip
    assert predicted.status_code == 200, predicted.text
    events = client.get(f"/v1/sweeps/{sweep['id']}/events?limit=1000").json()["data"]
    types = [e["type"] for e in events]
    assert types[0] == "sweep.created" and types[-1] == "sweep.status"
    assert types.count("trial.started") == 5 and types.count("trial.done") == 5
    assert "sweep.best_trial" in types
    assert sweep["counts"] == {"running": 0, "done": 5, "pruned": 0, "failed": 0, "cancelled": 0}
    listed = client.get(f"/v1/sweeps/{sweep['id']}/trials").json()["data"]
    assert listed == trials
