"""Boosted trees on the real system under a SIGKILL: every worker process killed while
a tree level is being built is redelivered, recomputes the same histograms, and the
job's trees are the bytes an undisturbed run writes."""

import io
import time

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from e2e_system import System
from safetensors.torch import load_file

pytestmark = pytest.mark.e2e

SPEC = {
    "target": "y",
    "model": {
        "type": "gradient_boosted_trees",
        # Enough levels (120) that the kills land while the job still runs: a level
        # takes tens of milliseconds here.
        "n_trees": 30,
        "learning_rate": 0.5,
        "max_depth": 4,
        "subsample": 0.8,
        "colsample": 0.8,
    },
    "training": {"seed": 5, "early_stopping": None},
    "distribution": {"shards": 2},
}


def nonlinear_parquet(rows: int = 400_000, features: int = 16) -> bytes:
    """Rows enough that a shard's level takes a visible share of a second."""
    rng = np.random.default_rng(8)
    x = rng.normal(size=(rows, features))
    x[rng.random(x.shape) < 0.05] = np.nan
    logit = np.nan_to_num(x[:, 0] * x[:, 1] + np.sin(x[:, 2]) + (x[:, 3] > 0.3) * x[:, 4])
    y = np.where(logit + rng.logistic(scale=0.5, size=rows) > 0, "yes", "no")
    table = pa.table({**{f"x{i}": x[:, i] for i in range(features)}, "y": y})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


@pytest.fixture(scope="module")
def dataset_id(system: System) -> str:
    upload = ("t.parquet", nonlinear_parquet())
    response = system.client.post("/v1/datasets", files={"file": upload})
    dataset = system.wait_for(f"/v1/datasets/{response.json()['id']}", {"ready", "failed"})
    assert dataset["status"] == "ready", dataset
    return str(dataset["id"])


def start(system: System, dataset_id: str) -> str:
    response = system.client.post("/v1/jobs", json={"dataset_id": dataset_id, **SPEC})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def finished(system: System, job_id: str) -> dict:
    return system.wait_for(f"/v1/jobs/{job_id}", {"succeeded", "failed", "cancelled"}, 600)


def trees(system: System, job: dict) -> dict[str, torch.Tensor]:
    path = system.data_dir / "blobs" / "models" / job["model_id"] / "model.safetensors"
    return load_file(str(path))


def busy_processes(pool: list[psutil.Process]) -> list[psutil.Process]:
    busy = []
    for process in pool:
        try:
            if process.cpu_percent(interval=0.02) > 50:
                busy.append(process)
        except psutil.NoSuchProcess:
            continue  # a pool process that ended (or was replaced) meanwhile
    return busy


def test_worker_processes_killed_mid_level_change_no_tree(system: System, dataset_id: str) -> None:
    undisturbed = finished(system, start(system, dataset_id))
    assert undisturbed["status"] == "succeeded", undisturbed["error"]
    assert undisturbed["metrics"]["accuracy"] > 0.7, undisturbed["metrics"]
    expected = trees(system, undisturbed)

    job_id = start(system, dataset_id)
    killed = 0
    deadline = time.monotonic() + 300
    # Two kills, in different levels of different trees: each lands in whatever task
    # a pool process is busy with, a shard's histograms or a merge.
    for level in (2, 41):
        while True:
            assert time.monotonic() < deadline, "the job never reached the level"
            job = system.client.get(f"/v1/jobs/{job_id}").json()
            assert job["status"] in ("queued", "preparing", "running"), job
            # Read afresh each time: Celery replaces a killed pool process.
            busy = busy_processes(psutil.Process(system.worker_pid).children())
            if job["progress"]["round"] >= level and busy:
                break
        for victim in busy:
            try:
                victim.kill()  # SIGKILL, as the OOM killer does
                killed += 1
            except psutil.NoSuchProcess:
                continue
    assert killed >= 2
    job = finished(system, job_id)
    # Celery saw its pool processes die under their tasks, which it then redelivered.
    assert system.worker_log.read_text().count("signal 9 (SIGKILL)") >= 2
    assert job["status"] == "succeeded", job
    got = trees(system, job)
    assert got.keys() == expected.keys()
    for name in got:
        assert torch.equal(got[name], expected[name]), name
    # The model is the job's own: all 30 trees, splitting on the signal columns.
    feature = got["feature"]
    assert feature.shape[0] == 30 and (feature >= 0).sum() > 30
