"""Error responses of the real app become typed exceptions carrying status, type, code,
param and message."""

from pathlib import Path

import pytest
from sample_data import SEED_EXAMPLE_CSV
from sdk_harness import FAST, Served

import shardtrain
from shardtrain import (
    AuthenticationError,
    BadRequestError,
    Client,
    ConflictError,
    NotFoundError,
    ShardtrainError,
    UnsupportedMediaTypeError,
    ValidationError,
)


def test_unknown_key_is_authentication_error(served: Served) -> None:
    other = Client("sk_not_a_key", str(served.http.base_url), http_client=served.http, retry=FAST)
    with pytest.raises(AuthenticationError) as caught:
        other.datasets.list_page()
    error = caught.value
    assert (error.status, error.type, error.code) == (
        401,
        "authentication_error",
        "invalid_api_key",
    )
    assert isinstance(error, ShardtrainError)


def test_unknown_id_is_not_found_with_param(served: Served) -> None:
    with pytest.raises(NotFoundError) as caught:
        served.sdk.datasets.get("ds_000000000000000000000000")
    assert caught.value.status == 404
    assert caught.value.code == "not_found"
    assert caught.value.param == "id"
    assert "ds_000000000000000000000000" in str(caught.value)


def test_preview_of_a_processing_dataset_is_conflict(served: Served, tmp_path: Path) -> None:
    path = tmp_path / "seed.csv"
    path.write_bytes(SEED_EXAMPLE_CSV)
    dataset = served.sdk.datasets.upload(path)
    with pytest.raises(ConflictError) as caught:
        served.sdk.datasets.preview(dataset.id)
    assert caught.value.code == "dataset_not_ready"


def test_a_png_is_unsupported_media(served: Served, tmp_path: Path) -> None:
    path = tmp_path / "picture.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    with pytest.raises(UnsupportedMediaTypeError) as caught:
        served.sdk.datasets.upload(path)
    assert (caught.value.status, caught.value.code) == (415, "unsupported_format")


def test_reused_idempotency_key_is_a_validation_error(served: Served, tmp_path: Path) -> None:
    path = tmp_path / "seed.csv"
    path.write_bytes(SEED_EXAMPLE_CSV)
    dataset = served.sdk.datasets.upload(path)
    spec = {"dataset_id": dataset.id, "target": "label"}
    first = served.sdk.jobs.create(spec, idempotency_key="nightly-1")
    again = served.sdk.jobs.create(spec, idempotency_key="nightly-1")
    assert again.id == first.id
    with pytest.raises(ValidationError) as caught:
        served.sdk.jobs.create({**spec, "training": {"rounds": 3}}, idempotency_key="nightly-1")
    assert caught.value.code == "idempotency_key_reused"
    assert caught.value.param == "Idempotency-Key"
    assert isinstance(caught.value, BadRequestError)


def test_predict_with_no_rows_names_the_param(served: Served) -> None:
    with pytest.raises(ValidationError) as caught:
        served.sdk.models.predict("mdl_000000000000000000000000", [])
    assert caught.value.status == 422
    assert caught.value.param == "inputs"


def test_spec_typos_fail_before_any_request(served: Served) -> None:
    import pydantic

    with pytest.raises(pydantic.ValidationError):
        served.sdk.jobs.create(dataset_id="ds_x", target="y", trainig={"rounds": 2})
    assert served.injector.requests("POST", "/v1/jobs") == []


def test_typed_spec_sends_only_what_was_set(served: Served, tmp_path: Path) -> None:
    path = tmp_path / "seed.csv"
    path.write_bytes(SEED_EXAMPLE_CSV)
    dataset = served.sdk.datasets.upload(path)
    spec = shardtrain.JobSpec(
        dataset_id=dataset.id,
        target="label",
        training=shardtrain.TrainingSpec(rounds=3, early_stopping=None),
        distribution=shardtrain.DistributionSpec(shards=1),
    )
    assert spec.to_request() == {
        "dataset_id": dataset.id,
        "target": "label",
        "training": {"rounds": 3, "early_stopping": None},
        "distribution": {"shards": 1},
    }
    job = served.sdk.jobs.create(spec)
    assert job.spec.training.rounds == 3
    assert job.spec.training.early_stopping is None
    assert job.spec.training.learning_rate == 0.01  # the server's default, filled in
    assert job.progress.rounds == 3


def test_no_api_key_is_refused_before_any_request(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SHARDTRAIN_API_KEY", raising=False)
    monkeypatch.setenv("SHARDTRAIN_DATA_DIR", str(tmp_path))
    with pytest.raises(ShardtrainError, match="No API key"):
        Client()
    (tmp_path / "dev-api-key").write_text("sk_from_make_run\n")
    monkeypatch.setenv("SHARDTRAIN_BASE_URL", "http://example.invalid:1")
    client = Client()
    assert client.base_url == "http://example.invalid:1"
    assert client._http.api_key == "sk_from_make_run"
