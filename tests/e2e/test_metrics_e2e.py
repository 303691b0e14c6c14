"""`/metrics` and the logs on real processes: a job trained by the prefork Celery worker,
its round and shard numbers recorded in Redis by the worker and exposed by uvicorn."""

import re
import time

import httpx
import pytest
from e2e_system import System
from prometheus_client.parser import text_string_to_metric_families
from sample_data import iris_table, table_to_csv

from app.messaging import QUEUES

pytestmark = pytest.mark.e2e

ROUNDS = 3
SHARDS = 2


def scrape(system: System) -> dict[str, list[tuple[dict[str, str], float]]]:
    # No API key: operators' scrapers have none.
    response = httpx.get(f"{system.base_url}/metrics", timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def value(samples: list[tuple[dict[str, str], float]], **labels: str) -> float:
    return sum(v for found, v in samples if labels.items() <= found.items())


def test_metrics_expose_a_finished_job(system: System) -> None:
    data = table_to_csv(iris_table())
    upload = system.client.post("/v1/datasets", files={"file": ("iris.csv", data)})
    assert upload.status_code == 201, upload.text
    dataset = system.wait_for(f"/v1/datasets/{upload.json()['id']}", {"ready", "failed"})
    assert dataset["status"] == "ready", dataset
    created = system.client.post(
        "/v1/jobs",
        json={
            "dataset_id": dataset["id"],
            "target": "species",
            "training": {"rounds": ROUNDS, "early_stopping": None},
            "distribution": {"shards": SHARDS},
        },
    )
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    job = system.wait_for(f"/v1/jobs/{job_id}", {"succeeded", "failed", "cancelled"})
    assert job["status"] == "succeeded", job

    # The worker records a round right after its merge commits, which may trail the
    # job's own progress by a moment.
    deadline = time.monotonic() + 15
    while True:
        metrics = scrape(system)
        if value(metrics.get("shardtrain_round_duration_seconds_count", [])) >= ROUNDS:
            break
        assert time.monotonic() < deadline, metrics.get("shardtrain_round_duration_seconds_count")
        time.sleep(0.2)

    assert value(metrics["shardtrain_round_duration_seconds_sum"]) > 0
    assert value(metrics["shardtrain_round_duration_seconds_bucket"], le="+Inf") >= ROUNDS
    assert value(metrics["shardtrain_shard_samples_per_second_count"]) >= ROUNDS * SHARDS
    assert value(metrics["shardtrain_shard_samples_per_second_sum"]) > 0
    assert value(metrics["shardtrain_jobs"], status="succeeded") >= 1
    assert {labels["queue"] for labels, _ in metrics["shardtrain_celery_queue_depth"]} == set(
        QUEUES
    )
    assert value(metrics["shardtrain_metrics_source_up"], source="sql") == 1
    assert value(metrics["shardtrain_metrics_source_up"], source="redis") == 1

    latency = metrics["shardtrain_http_request_duration_seconds_count"]
    assert value(latency, route="/v1/jobs/{job_id}", method="GET", status="200") >= 1
    assert value(latency, route="/v1/jobs", method="POST", status="201") >= 1
    # Route templates only: no id ever becomes a label.
    assert not [labels for labels, _ in latency if re.search(r"(job|ds|mdl)_[0-9a-f]", str(labels))]

    chart = system.client.get(f"/v1/jobs/{job_id}/metrics.png")
    assert chart.status_code == 200 and chart.content.startswith(b"\x89PNG\r\n\x1a\n")

    # The prefork worker's lines carry the ids of the task they were logged in (shard
    # ids too, which tests/unit/test_observability_logging.py checks on a failing shard).
    log = system.worker_log.read_text()
    for round_ in range(1, ROUNDS + 1):
        assert f"workers.tasks job_id={job_id} round={round_} round {round_} merged" in log
