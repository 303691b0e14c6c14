"""Faults on the real system: a killed worker process, a flushed Redis, a duplicate
merge, a cancel mid-run. Each job must end as an undisturbed run with the same seed."""

import time

import numpy as np
import psutil
import pyarrow as pa
import pytest
import redis
import torch
from e2e_system import System
from safetensors.torch import load_file
from sample_data import table_to_csv

pytestmark = pytest.mark.e2e


def synthetic_csv(rows: int = 40_000, features: int = 12) -> bytes:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(rows, features))
    y = (x @ rng.normal(size=features) + rng.normal(scale=0.5, size=rows)) > 0
    columns = {f"x{i}": x[:, i] for i in range(features)}
    return table_to_csv(pa.table({**columns, "y": np.where(y, "yes", "no")}))


SPEC = {
    "target": "y",
    # Several seconds of training per round, so a fault can land in the middle of one.
    "training": {"rounds": 4, "local_epochs": 6, "batch_size": 32, "early_stopping": None},
    "distribution": {"shards": 2},
}


@pytest.fixture(scope="module")
def dataset_id(system: System) -> str:
    response = system.client.post("/v1/datasets", files={"file": ("s.csv", synthetic_csv())})
    dataset = system.wait_for(f"/v1/datasets/{response.json()['id']}", {"ready", "failed"})
    assert dataset["status"] == "ready", dataset
    return str(dataset["id"])


@pytest.fixture(scope="module")
def undisturbed(system: System, dataset_id: str) -> dict[str, torch.Tensor]:
    job = run(system, dataset_id)
    assert job["status"] == "succeeded", job
    return parameters(system, job)


def run(system: System, dataset_id: str) -> dict:
    created = system.client.post("/v1/jobs", json={"dataset_id": dataset_id, **SPEC}).json()
    return system.wait_for(f"/v1/jobs/{created['id']}", {"succeeded", "failed", "cancelled"})


def start(system: System, dataset_id: str) -> str:
    return str(system.client.post("/v1/jobs", json={"dataset_id": dataset_id, **SPEC}).json()["id"])


def parameters(system: System, job: dict) -> dict[str, torch.Tensor]:
    return load_file(
        str(system.data_dir / "blobs" / "models" / job["model_id"] / "model.safetensors")
    )


def wait_until(predicate, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def event_types(system: System, job_id: str) -> list[str]:
    data = system.client.get(f"/v1/jobs/{job_id}/events", params={"limit": 1000}).json()["data"]
    return [e["type"] for e in data]


def test_killed_worker_process_mid_shard_changes_nothing(  # type: ignore[no-untyped-def]
    system: System, dataset_id: str, undisturbed
) -> None:
    job_id = start(system, dataset_id)
    pool = psutil.Process(system.worker_pid).children()

    def training() -> bool:
        job = system.client.get(f"/v1/jobs/{job_id}").json()
        busy = [p for p in pool if p.is_running() and p.cpu_percent(interval=0.05) > 50]
        return job["progress"]["round"] >= 1 and bool(busy)

    wait_until(training)
    victims = [p for p in pool if p.is_running()]
    for victim in victims:
        victim.kill()  # SIGKILL, as the OOM killer does
    job = system.wait_for(f"/v1/jobs/{job_id}", {"succeeded", "failed", "cancelled"})
    assert job["status"] == "succeeded", job
    assert same(parameters(system, job), undisturbed)


def test_flushed_redis_between_rounds_resumes_from_the_checkpoint(  # type: ignore[no-untyped-def]
    system: System, dataset_id: str, undisturbed
) -> None:
    job_id = start(system, dataset_id)
    wait_until(lambda: system.client.get(f"/v1/jobs/{job_id}").json()["progress"]["round"] >= 2)
    redis.Redis.from_url(system.redis_url).flushdb()
    job = system.wait_for(f"/v1/jobs/{job_id}", {"succeeded", "failed", "cancelled"})
    assert job["status"] == "succeeded", job
    assert same(parameters(system, job), undisturbed)
    assert "watchdog.resent" in event_types(system, job_id)


def test_a_merge_delivered_twice_takes_effect_once(  # type: ignore[no-untyped-def]
    system: System, dataset_id: str, undisturbed
) -> None:
    from celery import Celery

    job_id = start(system, dataset_id)
    wait_until(lambda: system.client.get(f"/v1/jobs/{job_id}").json()["progress"]["round"] >= 1)
    sender = Celery(broker=system.redis_url)
    for _ in range(2):
        sender.send_task("shardtrain.merge_round", args=[job_id, 1], queue="merge")
    job = system.wait_for(f"/v1/jobs/{job_id}", {"succeeded", "failed", "cancelled"})
    assert job["status"] == "succeeded", job
    assert job["progress"] == {"round": 4, "rounds": 4}
    rounds = system.client.get(f"/v1/jobs/{job_id}/metrics").json()["data"]
    assert [r["round"] for r in rounds] == [1, 2, 3, 4]
    assert same(parameters(system, job), undisturbed)


def test_cancel_mid_run_stops_before_the_next_round(system: System, dataset_id: str) -> None:
    job_id = start(system, dataset_id)
    wait_until(lambda: system.client.get(f"/v1/jobs/{job_id}").json()["progress"]["round"] >= 1)
    cancelled = system.client.post(f"/v1/jobs/{job_id}/cancel").json()
    assert cancelled["status"] == "cancelled"
    merged_at_cancel = cancelled["progress"]["round"]
    time.sleep(8)  # longer than a round: one would have been merged by now
    job = system.client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "cancelled"
    assert job["progress"]["round"] == merged_at_cancel
    rounds = system.client.get(f"/v1/jobs/{job_id}/metrics").json()["data"]
    assert len(rounds) == merged_at_cancel
    assert system.client.get("/v1/models", params={"job_id": job_id}).json()["data"] == []


def test_api_restarted_mid_job_finds_it_complete(  # type: ignore[no-untyped-def]
    system: System, dataset_id: str, undisturbed
) -> None:
    from e2e_system import stop, wait_until_ready

    job_id = start(system, dataset_id)
    wait_until(lambda: system.client.get(f"/v1/jobs/{job_id}").json()["progress"]["round"] >= 1)
    assert system.processes.api is not None
    stop(system.processes.api)  # the pipeline runs on without the API
    time.sleep(3)
    system.processes.start_api()
    assert system.processes.api is not None
    wait_until_ready(system.client, system.processes.api, system.data_dir.parent / "api.log")
    job = system.wait_for(f"/v1/jobs/{job_id}", {"succeeded", "failed", "cancelled"})
    assert job["status"] == "succeeded", job
    assert same(parameters(system, job), undisturbed)
    types = event_types(system, job_id)
    assert types.count("round.completed") == 4 and types[-1] == "job.status"
    rounds = system.client.get(f"/v1/jobs/{job_id}/metrics").json()["data"]
    assert [r["round"] for r in rounds] == [1, 2, 3, 4]


def test_every_worker_killed_then_one_started_after_the_deadline(  # type: ignore[no-untyped-def]
    system: System, dataset_id: str, undisturbed
) -> None:
    from e2e_system import STAGE_DEADLINE_S, wait_for_worker

    job_id = start(system, dataset_id)
    wait_until(lambda: system.client.get(f"/v1/jobs/{job_id}").json()["progress"]["round"] >= 1)
    system.processes.kill_worker()
    time.sleep(STAGE_DEADLINE_S + 3)  # the watchdog re-sends into an empty room
    assert system.client.get(f"/v1/jobs/{job_id}").json()["status"] == "running"
    system.processes.start_worker()
    assert system.processes.worker is not None
    wait_for_worker(system.redis_url, system.processes.worker, system.worker_log)
    job = system.wait_for(f"/v1/jobs/{job_id}", {"succeeded", "failed", "cancelled"})
    assert job["status"] == "succeeded", job
    assert same(parameters(system, job), undisturbed)
    assert "watchdog.resent" in event_types(system, job_id)


def test_a_job_stopped_by_a_lost_worker_resumes_to_the_undisturbed_model(  # type: ignore[no-untyped-def]
    system: System, dataset_id: str, undisturbed
) -> None:
    """Every worker killed mid-round and the job cancelled while none runs; then a worker
    back and `POST /v1/jobs/{id}/resume`: the same job ends with the model an
    uninterrupted run trains, bit for bit, its lost round trained again on new task ids."""
    from e2e_system import wait_for_worker

    job_id = start(system, dataset_id)
    wait_until(lambda: system.client.get(f"/v1/jobs/{job_id}").json()["progress"]["round"] >= 1)
    system.processes.kill_worker()
    cancelled = system.client.post(f"/v1/jobs/{job_id}/cancel").json()
    assert cancelled["status"] == "cancelled", cancelled
    system.processes.start_worker()
    assert system.processes.worker is not None
    wait_for_worker(system.redis_url, system.processes.worker, system.worker_log)

    resumed = system.client.post(f"/v1/jobs/{job_id}/resume")
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["status"] == "running"
    job = system.wait_for(f"/v1/jobs/{job_id}", {"succeeded", "failed", "cancelled"})
    assert job["status"] == "succeeded", job
    assert same(parameters(system, job), undisturbed)
    rounds = system.client.get(f"/v1/jobs/{job_id}/metrics").json()["data"]
    assert [r["round"] for r in rounds] == [1, 2, 3, 4]
    assert "job.resumed" in event_types(system, job_id)


def test_a_sweep_whose_worker_processes_die_mid_trial_ends_with_the_undisturbed_models(  # type: ignore[no-untyped-def]
    system: System, dataset_id: str, undisturbed
) -> None:
    """Both trials draw the settings of SPEC (seed 1 draws l2 = 0.0 twice); the pool is
    SIGKILLed while they train. The shards are redelivered, the sweep's step runs on, and
    each trial's model is the undisturbed job's, bit for bit, on the shared shards."""
    body = {
        "template": {"dataset_id": dataset_id, **SPEC},
        "space": {"training.l2": {"choice": [0.0, 0.0001]}},
        "metric": "accuracy",
        "sampler": "random",
        "pruner": "none",
        "max_trials": 2,
        "parallelism": 2,
        "seed": 1,
    }
    created = system.client.post("/v1/sweeps", json=body)
    assert created.status_code == 201, created.text
    sweep_id = created.json()["id"]
    pool = psutil.Process(system.worker_pid).children()

    def training() -> bool:
        trials = system.client.get(f"/v1/sweeps/{sweep_id}").json()["trials"]
        busy = [p for p in pool if p.is_running() and p.cpu_percent(interval=0.05) > 50]
        return any(t["rounds"] >= 1 for t in trials) and bool(busy)

    wait_until(training)
    for victim in [p for p in pool if p.is_running()]:
        victim.kill()
    sweep = system.wait_for(f"/v1/sweeps/{sweep_id}", {"succeeded", "failed", "cancelled"})
    assert sweep["status"] == "succeeded", sweep
    assert [t["params"] for t in sweep["trials"]] == [{"training.l2": 0.0}] * 2
    for trial in sweep["trials"]:
        job = system.client.get(f"/v1/jobs/{trial['job_id']}").json()
        assert job["status"] == "succeeded" and job["sweep_id"] == sweep_id
        assert same(parameters(system, job), undisturbed)
    assert sweep["model_id"] == sweep["best_trial"]["model_id"]
