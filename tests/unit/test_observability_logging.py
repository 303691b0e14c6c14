"""Log lines carry the ids of the task or request being handled, plain or as JSON."""

import io
import json
import logging
from collections.abc import Iterator

import pytest
from dbsetup import migrate
from fastapi.testclient import TestClient

from app.config import Settings, get_settings
from app.db import session_scope
from app.jobs.repository import JobRepository
from app.jobs.spec import JobSpec
from app.main import create_app
from app.observability.logging import configure_logging, log_ids
from app.tables import Dataset, Job
from app.tenancy.scope import SYSTEM
from app.tenancy.service import ensure_tenant


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    level = root.level
    stream = io.StringIO()
    yield stream
    root.removeHandler(configure_logging("plain", level, stream=io.StringIO()))
    root.setLevel(level)


def json_lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_the_ids_bound_around_them(log_stream: io.StringIO) -> None:
    configure_logging("json", stream=log_stream)
    logger = logging.getLogger("app.jobs.stages.merge")
    with log_ids(job_id="job_a", round=3):
        with log_ids(shard=1):
            logger.info("training %s", "now")
        logger.warning("merging")
    logger.info("idle")
    inner, outer, idle = json_lines(log_stream)
    assert inner["message"] == "training now"
    assert inner["level"] == "INFO" and inner["logger"] == "app.jobs.stages.merge"
    assert (inner["job_id"], inner["round"], inner["shard"]) == ("job_a", 3, 1)
    assert (outer["job_id"], outer["round"]) == ("job_a", 3) and "shard" not in outer
    assert not {"job_id", "round", "shard", "ids"} & set(idle)


def test_plain_lines_show_the_ids_after_the_logger_name(log_stream: io.StringIO) -> None:
    configure_logging("plain", stream=log_stream)
    with log_ids(job_id="job_b", round=2, shard=0):
        logging.getLogger("workers.tasks").error("it broke")
    line = log_stream.getvalue()
    assert " ERROR workers.tasks job_id=job_b round=2 shard=0 it broke" in line


def test_configuring_again_leaves_one_handler(log_stream: io.StringIO) -> None:
    configure_logging("plain", stream=io.StringIO())
    configure_logging("json", stream=log_stream)
    ours = [h for h in logging.getLogger().handlers if h.get_name() == "shardtrain"]
    assert len(ours) == 1
    logging.getLogger("x").warning("once")
    assert len(json_lines(log_stream)) == 1


def test_a_failing_shard_task_logs_json_with_its_job_round_and_shard(
    log_stream: io.StringIO,
) -> None:
    """The real Celery task, called in this process against the default database: its
    shard cannot train (the job's plan is a stub), so it logs the failure."""
    from workers import tasks

    migrate(get_settings().database_url)
    with session_scope() as session:
        tenant = ensure_tenant(session, "logging")
        dataset = Dataset(
            tenant_id=tenant.id, name="d", filename="d.csv", format="csv", sha256="0" * 64,
            raw_key="raw/d", status="ready",
        )  # fmt: skip
        session.add(dataset)
        session.flush()
        job = Job(
            tenant_id=tenant.id,
            dataset_id=dataset.id,
            spec=JobSpec.model_validate({"dataset_id": dataset.id, "target": "y"}).model_dump(
                mode="json"
            ),
            rounds=2,
            status="running",
            task="classification",
            plan={"shard_keys": ["shards/none.npy"]},
        )
        session.add(job)
        session.flush()
        job_id = job.id

    configure_logging("json", stream=log_stream)
    tasks.train_shard(job_id, 1, 0)

    lines = json_lines(log_stream)
    failure = next(line for line in lines if line["logger"] == "workers.tasks")
    assert failure["level"] == "ERROR"
    assert (failure["job_id"], failure["round"], failure["shard"]) == (job_id, 1, 0)
    assert failure["exc_info"].startswith("Traceback")
    assert failure["message"].startswith(f"shard 0 of round 1 failed for job {job_id}")
    # Every line the task logged carries the ids, not only its own module's.
    assert all(line.get("job_id") == job_id for line in lines)
    with session_scope() as session:
        failed = JobRepository(session, SYSTEM).get(job_id)
        assert failed is not None and failed.error_code == "shard_failed"


def test_api_requests_carry_a_request_id(settings: Settings, log_stream: io.StringIO) -> None:
    app = create_app(settings.model_copy(update={"log_format": "json"}))
    configure_logging("json", stream=log_stream)

    @app.get("/test-log")
    def log_something() -> dict[str, str]:
        logging.getLogger("app.test").info("inside a request")
        return {}

    with TestClient(app) as client:
        chosen = client.get("/test-log", headers={"X-Request-ID": "req-from-proxy.1"})
        made = client.get("/test-log")
        refused = client.get("/test-log", headers={"X-Request-ID": "bad id\twith spaces"})
    assert chosen.headers["x-request-id"] == "req-from-proxy.1"
    assert len(made.headers["x-request-id"]) == 16
    assert refused.headers["x-request-id"] not in (
        "bad id\twith spaces",
        made.headers["x-request-id"],
    )
    inside = [line for line in json_lines(log_stream) if line["message"] == "inside a request"]
    assert [line["request_id"] for line in inside] == [
        "req-from-proxy.1",
        made.headers["x-request-id"],
        refused.headers["x-request-id"],
    ]
