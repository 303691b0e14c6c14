"""The status enums are the one list of states: the API's schemas, its list filter,
the SDK's models and the SDK's "finished" sets must spell exactly the same values."""

import inspect
from enum import StrEnum
from typing import Any, get_args

import pytest
from pydantic import BaseModel

import shardtrain.models as sdk
from app.datasets.schemas import DatasetOut
from app.jobs.schemas import JobOut
from app.registry import routes as registry_routes
from app.registry.schemas import BatchPredictionOut, ModelOut
from app.tables.statuses import (
    BATCH_ACTIVE,
    BATCH_FINISHED,
    JOB_ACTIVE,
    JOB_TERMINAL,
    BatchStatus,
    DatasetStatus,
    JobStatus,
    ModelStatus,
)


def literal_values(model: type[BaseModel]) -> set[str]:
    annotation: Any = model.model_fields["status"].annotation
    return set(get_args(annotation))


@pytest.mark.parametrize(
    ("enum", "api", "client"),
    [
        (JobStatus, JobOut, sdk.Job),
        (DatasetStatus, DatasetOut, sdk.Dataset),
        (ModelStatus, ModelOut, sdk.Model),
        (BatchStatus, BatchPredictionOut, sdk.BatchPrediction),
    ],
)
def test_schemas_spell_the_enum(
    enum: type[StrEnum], api: type[BaseModel], client: type[BaseModel]
) -> None:
    values = {member.value for member in enum}
    assert literal_values(api) == values
    assert literal_values(client) == values


def test_the_model_list_filter_takes_every_model_status() -> None:
    annotation = inspect.signature(registry_routes.list_models).parameters["status"].annotation
    (literal, _none) = get_args(annotation)
    assert set(get_args(literal)) == {member.value for member in ModelStatus}


def test_active_and_finished_split_each_enum() -> None:
    assert set(JobStatus) == JOB_ACTIVE | JOB_TERMINAL and not JOB_ACTIVE & JOB_TERMINAL
    assert set(BatchStatus) == BATCH_ACTIVE | BATCH_FINISHED
    assert not BATCH_ACTIVE & BATCH_FINISHED
    # The SDK waits until one of these; a state missing there would wait forever.
    assert {status.value for status in JOB_TERMINAL} == sdk.JOB_TERMINAL
    assert {status.value for status in BATCH_FINISHED} == sdk.BATCH_TERMINAL
    assert {DatasetStatus.READY.value, DatasetStatus.FAILED.value} == sdk.DATASET_TERMINAL


def test_a_status_reads_and_formats_as_its_plain_value() -> None:
    # Columns, JSON event payloads, log lines and metric labels all take the enum
    # as the string it stands for.
    assert f"{JobStatus.RUNNING}" == "running" == JobStatus.RUNNING
    assert str(BatchStatus.FAILED) == "failed"
