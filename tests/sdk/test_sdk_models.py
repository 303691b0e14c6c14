"""Response models accept what a newer server may send; the request spec stays strict."""

import pydantic
import pytest

from shardtrain import JobSpec
from shardtrain.models import Job

JOB = {
    "id": "job_9a8b7c6d5e4f3a2b1c0d9e8f",
    "object": "job",
    "status": "running",
    "task": "classification",
    "progress": {"round": 1, "rounds": 3},
    "created_at": 1767225600,
    "a_field_from_a_newer_server": 1,
}


def test_a_job_whose_spec_has_fields_this_sdk_lacks_still_reads() -> None:
    spec = {"dataset_id": "ds_1", "target": "y", "training": {"rounds": 3, "warmup": 2}}
    job = Job.model_validate({**JOB, "spec": {**spec, "sampling": "stratified"}})
    assert (job.id, job.spec.dataset_id, job.spec.target) == (JOB["id"], "ds_1", "y")
    assert job.model_extra == {"a_field_from_a_newer_server": 1}


def test_a_known_spec_is_typed_and_a_callers_typo_fails_before_any_request() -> None:
    job = Job.model_validate({**JOB, "spec": {"dataset_id": "ds_1", "target": "y"}})
    assert job.spec.training.rounds == JobSpec(dataset_id="d", target="y").training.rounds
    with pytest.raises(pydantic.ValidationError):
        JobSpec.model_validate({"dataset_id": "ds_1", "target": "y", "trainig": {}})
