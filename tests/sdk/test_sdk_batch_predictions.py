"""Batch predictions (and reruns) through the SDK against the real app: the POST carries one
Idempotency-Key over its retries (the caller's when given), and an unknown model or
batch prediction is a NotFoundError that leaves no file behind. The worker side (a
batch prediction that runs and its output) is in tests/e2e/test_sdk_e2e.py."""

from pathlib import Path

import pytest
from fault_injection import Fault
from sdk_harness import Served

from shardtrain import NotFoundError

MODEL = "mdl_000000000000000000000000"
PATH = f"/v1/models/{MODEL}/batch_predictions"


def test_batch_predict_retries_with_the_callers_key(served: Served) -> None:
    served.injector.faults.append(Fault("POST", PATH, 503, times=2))
    with pytest.raises(NotFoundError) as caught:
        served.sdk.models.batch_predict(MODEL, "ds_000000000000000000000000", idempotency_key="k1")
    attempts = served.injector.requests("POST", PATH)
    assert [a.answered for a in attempts] == [503, 503, 404]
    assert {a.idempotency_key for a in attempts} == {"k1"}
    assert caught.value.code == "not_found"


def test_batch_predict_makes_one_key_per_call(served: Served) -> None:
    for _ in range(2):
        with pytest.raises(NotFoundError):
            served.sdk.models.batch_predict(MODEL, "ds_000000000000000000000000")
    keys = [a.idempotency_key for a in served.injector.requests("POST", PATH)]
    assert len(keys) == 2 and None not in keys and keys[0] != keys[1]


def test_unknown_batch_prediction_is_not_found_and_writes_nothing(
    served: Served, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(NotFoundError):
        served.sdk.models.get_batch_prediction(MODEL, "bp_000000000000000000000000")
    with pytest.raises(NotFoundError):
        served.sdk.models.download_batch_output(MODEL, "bp_000000000000000000000000", out)
    assert list(out.iterdir()) == []


def test_rerun_sends_the_callers_key(served: Served) -> None:
    path = "/v1/jobs/job_000000000000000000000000/rerun"
    served.injector.faults.append(Fault("POST", path, 503, times=1))
    with pytest.raises(NotFoundError):
        served.sdk.jobs.rerun("job_000000000000000000000000", idempotency_key="k2")
    attempts = served.injector.requests("POST", path)
    assert [(a.answered, a.idempotency_key) for a in attempts] == [(503, "k2"), (404, "k2")]
