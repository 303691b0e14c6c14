"""Run three jobs through the worker stages and write, for each, the SHA-256 of every
round's global parameters and the exact losses, as JSON to the file named by
$SHARDTRAIN_FINGERPRINTS_OUT.

Not collected by the suite (its name is not test_*): `test_round_protocol` runs it in a
child pytest with reproducible numerics (see REPRODUCIBLE_NUMERICS there), as it was
run on the code before the round policy to record `tests/fixtures/round_parameters.json`:

    SHARDTRAIN_FINGERPRINTS_OUT=tests/fixtures/round_parameters.json MKL_CBWR=COMPATIBLE \\
    ATEN_CPU_CAPABILITY=default OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 CUDA_VISIBLE_DEVICES= \\
    .venv/bin/python -m pytest -q -p no:cacheprovider tests/workers/round_fingerprints.py

Re-recorded on 2026-12-06: a fresh install's numpy/pyarrow/scikit-learn moved the
diabetes job's float32 results by about 1e-7 (the code before and after that day's
change gave the same new digests, the iris jobs' stayed). `constraints.txt` now pins
what `make install` installs, so CI computes with the versions these were recorded on.
"""

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from inprocess import run_job
from sample_data import iris_table, table_to_csv
from sklearn.datasets import load_diabetes

from app.db import session_scope
from app.jobs.checkpoints import load_checkpoint
from app.jobs.repository import JobRepository
from app.tenancy.scope import SYSTEM


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


def dataset_for(name: str) -> tuple[str, bytes]:
    if name.startswith("iris"):
        return "iris.csv", table_to_csv(iris_table())
    return "diabetes.csv", table_to_csv(diabetes_table())


def digest(state: dict[str, Any]) -> str:
    found = hashlib.sha256()
    for key in sorted(state):
        found.update(key.encode())
        found.update(state[key].contiguous().numpy().tobytes())
    return found.hexdigest()


def run_named_job(client, ready_dataset, sessions, store, params, name: str) -> str:  # type: ignore[no-untyped-def]
    dataset_id = ready_dataset(*dataset_for(name))
    response = client.post("/v1/jobs", json={"dataset_id": dataset_id, **JOBS[name]})
    assert response.status_code == 201, response.text
    job_id: str = response.json()["id"]
    run_job(sessions, store, params, job_id)
    return job_id


def job_fingerprint(sessions, store, job_id: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    with session_scope(sessions) as session:
        repository = JobRepository(session, SYSTEM)
        job = repository.get(job_id)
        assert job is not None and job.status == "succeeded", job and job.error
        merged = repository.rounds(job_id)
        checkpoints = [load_checkpoint(store, job_id, r) for r in range(job.current_round + 1)]
        return {
            "rounds_run": job.current_round,
            "best_round": job.best_round,
            "checkpoints": [digest(state) for state in checkpoints if state is not None],
            "train_loss": [r.train_loss for r in merged],
            "val_loss": [r.val_loss for r in merged],
        }


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_write_fingerprints(client, ready_dataset, sessions, store, params) -> None:  # type: ignore[no-untyped-def]
    found = {
        name: job_fingerprint(
            sessions, store, run_named_job(client, ready_dataset, sessions, store, params, name)
        )
        for name in sorted(JOBS)
    }
    Path(os.environ["SHARDTRAIN_FINGERPRINTS_OUT"]).write_text(json.dumps(found, indent=1) + "\n")
