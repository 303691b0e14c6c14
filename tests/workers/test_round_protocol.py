"""One round protocol: the worker stages and the in-process trainer run the same round
policy, and its numerics did not move when the policy was drawn out of the stages.

`tests/fixtures/round_parameters.json` holds, for each job below, the SHA-256 of every
round's global parameters and the exact losses, as the stages computed them before the
round policy existed (commit 500ab2c). Recorded by `record_fingerprints()` below.
"""

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from inprocess import run_job
from sample_data import iris_table, table_to_csv
from sklearn.datasets import load_diabetes

from app.db import session_scope
from app.jobs.checkpoints import load_checkpoint
from app.jobs.repository import JobRepository

FINGERPRINTS = Path(__file__).resolve().parent.parent / "fixtures" / "round_parameters.json"


def diabetes_table() -> pa.Table:
    data = load_diabetes()
    columns = {name: data.data[:, i] for i, name in enumerate(data.feature_names)}
    return pa.table({**columns, "progression": data.target})


JOBS: dict[str, dict[str, Any]] = {
    "iris_mlp_fedavg": {
        "target": "species",
        "model": {"type": "mlp", "hidden_layers": [8]},
        "distribution": {"shards": 4},
        "training": {"rounds": 4, "seed": 3, "learning_rate": 0.05},
    },
    "iris_logistic_median_l1": {
        "target": "species",
        "model": {"type": "logistic_regression"},
        "distribution": {"shards": 3, "aggregation": "median"},
        "training": {"rounds": 3, "l1": 0.001, "optimizer": "sgd", "learning_rate": 0.2},
    },
    "diabetes_linear_trimmed_early_stop": {
        "target": "progression",
        "model": {"type": "linear_regression"},
        "distribution": {"shards": 5, "aggregation": "trimmed_mean", "trim_fraction": 0.2},
        "training": {
            "rounds": 12,
            "l2": 0.01,
            "learning_rate": 0.3,
            "early_stopping": {"patience": 2, "min_delta": 0.5},
        },
    },
}


def _dataset(name: str) -> tuple[str, bytes]:
    if name.startswith("iris"):
        return "iris.csv", table_to_csv(iris_table())
    return "diabetes.csv", table_to_csv(diabetes_table())


def _digest(state: dict[str, Any]) -> str:
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].contiguous().numpy().tobytes())
    return digest.hexdigest()


def job_fingerprint(client, ready_dataset, sessions, store, params, name: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    dataset_id = ready_dataset(*_dataset(name))
    response = client.post("/v1/jobs", json={"dataset_id": dataset_id, **JOBS[name]})
    assert response.status_code == 201, response.text
    job_id = response.json()["id"]
    run_job(sessions, store, params, job_id)
    with session_scope(sessions) as session:
        repository = JobRepository(session)
        job = repository.get(job_id)
        assert job is not None and job.status == "succeeded", job and job.error
        merged = repository.rounds(job_id)
        checkpoints = [load_checkpoint(store, job_id, r) for r in range(job.current_round + 1)]
        return {
            "rounds_run": job.current_round,
            "best_round": job.best_round,
            "checkpoints": [_digest(state) for state in checkpoints if state is not None],
            "train_loss": [r.train_loss for r in merged],
            "val_loss": [r.val_loss for r in merged],
        }


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
@pytest.mark.parametrize("name", sorted(JOBS))
def test_job_parameters_are_bit_identical_to_before_the_round_policy(  # type: ignore[no-untyped-def]
    name, client, ready_dataset, sessions, store, params
) -> None:
    expected = json.loads(FINGERPRINTS.read_text())[name]
    assert job_fingerprint(client, ready_dataset, sessions, store, params, name) == expected


def record_fingerprints(client, ready_dataset, sessions, store, params) -> None:  # type: ignore[no-untyped-def]
    found = {
        name: job_fingerprint(client, ready_dataset, sessions, store, params, name)
        for name in sorted(JOBS)
    }
    FINGERPRINTS.write_text(json.dumps(found, indent=1) + "\n")
    assert all(np.isfinite(loss) for job in found.values() for loss in job["train_loss"])
