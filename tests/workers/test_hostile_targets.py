"""Numbers training cannot hold: prepare fails the job naming the column, and a metric
that cannot be computed fails the gate and says why, instead of a silent null."""

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from fastapi.testclient import TestClient
from sample_data import iris_table, table_to_csv
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.db import session_scope
from app.jobs.checkpoints import load_checkpoint, save_checkpoint
from app.jobs.repository import JobRepository
from app.jobs.stages import finalize, merge, next_step, prepare, train
from app.paramstore import ParamStore
from app.storage import BlobStore
from app.tables import Dataset
from app.tenancy.scope import SYSTEM

MakeDataset = Callable[[str, bytes], str]


def regression_table(rows: int = 200) -> pa.Table:
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=rows), rng.normal(size=rows)
    return pa.table({"x1": x1, "x2": x2, "y": 2.0 + 0.5 * x1 - 0.25 * x2})


def replace_value(
    sessions: sessionmaker[Session],
    store: BlobStore,
    dataset_id: str,
    column: str,
    row: int,
    value: float,
) -> None:
    """Put `value` in the dataset's stored Parquet, as a dataset ingested before the upload
    checks (or written by another tool) may hold it."""
    with session_scope(sessions) as session:
        dataset = session.scalars(select(Dataset).where(Dataset.id == dataset_id)).one()
        assert dataset.data_key is not None
        path = store.path(dataset.data_key)
    table = pq.read_table(path)
    values = table.column(column).to_numpy().copy()
    values[row] = value
    index = table.schema.get_field_index(column)
    pq.write_table(table.set_column(index, column, pa.array(values)), path)


def queue(client: TestClient, dataset_id: str, target: str, **spec: Any) -> str:
    response = client.post("/v1/jobs", json={"dataset_id": dataset_id, "target": target, **spec})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def prepared_job(
    sessions: sessionmaker[Session], store: BlobStore, params: ParamStore, job_id: str
) -> next_step.NextStep:
    with session_scope(sessions) as session:
        assert prepare.begin_prepare(session, job_id) == "build"
    with session_scope(sessions) as session:
        return prepare.build_job_shards(session, store, params, job_id)


def train_until_finalize(
    sessions: sessionmaker[Session], store: BlobStore, params: ParamStore, job_id: str
) -> int:
    """Every round, as the workers run them; returns the round finalize will keep."""
    step = prepared_job(sessions, store, params, job_id)
    while step.next == "round":
        for shard in range(step.shards):
            with session_scope(sessions) as session:
                train.train_shard(session, store, params, job_id, step.round, shard)
        with session_scope(sessions) as session:
            step = merge.merge_round(session, store, params, job_id, step.round)
    assert step.next == "finalize"
    with session_scope(sessions) as session:
        job = JobRepository(session, SYSTEM).get(job_id)
        assert job is not None
        return job.best_round if job.best_round is not None else job.current_round


@pytest.mark.parametrize(
    ("column", "row", "value", "expected"),
    [
        ("y", 17, 1e308, "target column 'y' holds 1e+308 at row 18"),
        ("y", 3, -np.inf, "target column 'y' holds -inf at row 4"),
        ("x1", 150, np.inf, "feature column 'x1' holds inf at row 151"),
        # Finite in float64, infinite once written as float32.
        ("x2", 0, -3.5e38, "feature column 'x2' holds -3.5e+38 at row 1"),
    ],
)
def test_prepare_fails_on_a_value_float32_cannot_hold_naming_the_column(
    client: TestClient,
    ready_dataset: MakeDataset,
    sessions: sessionmaker[Session],
    store: BlobStore,
    params: ParamStore,
    column: str,
    row: int,
    value: float,
    expected: str,
) -> None:
    dataset_id = ready_dataset("reg.csv", table_to_csv(regression_table()))
    replace_value(sessions, store, dataset_id, column, row, value)
    job_id = queue(client, dataset_id, "y", model={"type": "linear_regression"})
    assert prepared_job(sessions, store, params, job_id).next == "none"
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "failed"
    assert job["error"]["code"] == "invalid_data"
    assert job["error"]["message"].startswith(expected), job["error"]
    assert "float32" in job["error"]["message"]


def test_a_missing_target_value_is_still_a_dropped_row_not_an_error(
    client: TestClient,
    ready_dataset: MakeDataset,
    sessions: sessionmaker[Session],
    store: BlobStore,
    params: ParamStore,
) -> None:
    dataset_id = ready_dataset("reg.csv", table_to_csv(regression_table()))
    replace_value(sessions, store, dataset_id, "y", 17, float("nan"))
    replace_value(sessions, store, dataset_id, "x1", 18, float("nan"))
    job_id = queue(client, dataset_id, "y", model={"type": "linear_regression"})
    assert prepared_job(sessions, store, params, job_id).next == "round"
    with session_scope(sessions) as session:
        job = JobRepository(session, SYSTEM).get(job_id)
        assert job is not None and job.plan is not None
        assert job.plan["dropped_rows"] == 1


def poison_checkpoint(store: BlobStore, job_id: str, round_: int) -> None:
    """Parameters that overflowed: every prediction of the kept model is NaN."""
    state = load_checkpoint(store, job_id, round_)
    assert state is not None
    save_checkpoint(
        store, job_id, round_, {k: torch.full_like(v, float("nan")) for k, v in state.items()}
    )


def finalize_job(
    client: TestClient, sessions: sessionmaker[Session], store: BlobStore, job_id: str
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    with session_scope(sessions) as session:
        assert finalize.finalize_job(session, store, job_id)
    job = client.get(f"/v1/jobs/{job_id}").json()
    model = client.get(f"/v1/models/{job['model_id']}").json()
    events = client.get(f"/v1/jobs/{job_id}/events", params={"limit": 100}).json()["data"]
    return job, model, events


@pytest.mark.parametrize(
    ("data", "target", "spec", "metrics"),
    [
        (
            table_to_csv(regression_table()),
            "y",
            {"model": {"type": "linear_regression"}, "deploy_if": {"metric": "rmse", "max": 1.0}},
            {"rmse", "mae", "r2"},
        ),
        (
            table_to_csv(iris_table()),
            "species",
            {"deploy_if": {"metric": "accuracy", "min": 0.5}},
            {"accuracy", "log_loss", "f1_macro"},
        ),
    ],
)
def test_a_metric_that_cannot_be_computed_fails_the_gate_and_says_why(
    client: TestClient,
    ready_dataset: MakeDataset,
    sessions: sessionmaker[Session],
    store: BlobStore,
    params: ParamStore,
    data: bytes,
    target: str,
    spec: dict[str, Any],
    metrics: set[str],
) -> None:
    dataset_id = ready_dataset("data.csv", data)
    job_id = queue(client, dataset_id, target, training={"rounds": 2}, **spec)
    poison_checkpoint(store, job_id, train_until_finalize(sessions, store, params, job_id))
    job, model, events = finalize_job(client, sessions, store, job_id)

    gated = spec["deploy_if"]["metric"]
    assert model["status"] == "rejected"
    gate = model["gate"]
    assert gate["passed"] is False and gate["value"] is None
    assert gate["reason"].startswith(f"{gated} could not be computed: the model's "), gate
    assert "are not finite for" in gate["reason"]
    # Left out, not null: every metric there is a number.
    assert model["metrics"] == {}
    assert set(job["metrics"]["unavailable"]) == metrics
    assert all("not finite" in why for why in job["metrics"]["unavailable"].values())
    by_type = {e["type"]: e for e in events}
    assert by_type["metrics.unavailable"]["level"] == "warning"
    assert gated in by_type["metrics.unavailable"]["message"]
    assert by_type["model.rejected"]["message"].endswith(gate["reason"])


def test_without_a_gate_an_unscorable_model_still_records_why(
    client: TestClient,
    ready_dataset: MakeDataset,
    sessions: sessionmaker[Session],
    store: BlobStore,
    params: ParamStore,
) -> None:
    dataset_id = ready_dataset("reg.csv", table_to_csv(regression_table()))
    job_id = queue(
        client, dataset_id, "y", model={"type": "linear_regression"}, training={"rounds": 1}
    )
    poison_checkpoint(store, job_id, train_until_finalize(sessions, store, params, job_id))
    job, model, events = finalize_job(client, sessions, store, job_id)
    assert job["status"] == "succeeded"
    assert model["gate"] is None and model["metrics"] == {}
    assert set(job["metrics"]["unavailable"]) == {"rmse", "mae", "r2"}
    warning = next(e for e in events if e["type"] == "metrics.unavailable")
    assert "rmse: the model's predictions are not finite for" in warning["message"]


def test_a_healthy_regression_job_passes_its_gate_with_no_reason(
    train_job: Callable[..., dict[str, Any]], client: TestClient
) -> None:
    job = train_job(
        "reg.csv",
        table_to_csv(regression_table()),
        target="y",
        model={"type": "linear_regression"},
        training={"learning_rate": 0.1, "rounds": 20},
        deploy_if={"metric": "rmse", "max": 0.5},
    )
    assert job["status"] == "succeeded"
    assert "unavailable" not in job["metrics"]
    model = client.get(f"/v1/models/{job['model_id']}").json()
    assert model["status"] == "deployed", model["gate"]
    assert model["gate"]["reason"] is None and model["gate"]["passed"] is True
    assert set(model["metrics"]) == {"rmse", "mae", "r2"}
