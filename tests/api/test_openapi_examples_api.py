"""The OpenAPI examples work as shown: the upload form, the job example and the predict
example, pasted in that order, train a model that passes its own gate and predicts; and
every error example is an error its operation can actually return."""

from typing import Any

import pytest
from fastapi.testclient import TestClient
from inprocess import run_job, run_sweep
from sample_data import iris_table, table_to_csv
from sqlalchemy.orm import Session, sessionmaker

from app.datasets.service import ingest_dataset
from app.db import session_scope
from app.main import create_app
from app.paramstore import ParamStore
from app.storage import BlobStore

# Every operation may fail these ways (COMMON_ERROR_RESPONSES): unparseable JSON,
# a bad or missing key, a body over the request limit, a bad query or path field,
# the database down.
COMMON: dict[int, set[str]] = {
    400: {"invalid_body"},
    401: {"missing_api_key", "invalid_api_key"},
    404: {"not_found"},
    413: {"body_too_large"},
    422: {"invalid_request", "invalid_json"},
    503: {"database_unavailable"},
}
# Read from the APIError raises under app/ and docs/api.md's error and quota tables:
# what each operation adds to, or puts in place of, COMMON for a status. `conflict` is
# a concurrent request with the same Idempotency-Key, or a worker's change, on a write.
OPERATION: dict[tuple[str, int], set[str]] = {
    ("datasets-create", 400): {"invalid_body", "truncated_body"},
    ("datasets-create", 403): {"import_not_allowed", "object_forbidden"},
    ("datasets-create", 408): {"upload_timeout"},
    ("datasets-create", 409): {"quota_exceeded", "conflict", "object_changed"},
    ("datasets-create", 413): {"file_too_large", "body_too_large"},
    ("datasets-create", 415): {"unsupported_format", "unsupported_media_type"},
    ("datasets-create", 422): {
        "invalid_request", "invalid_json", "empty_file", "idempotency_key_reused",
        "object_not_found",
    },
    ("datasets-create", 502): {"storage_error"},
    ("datasets-create", 503): {"database_unavailable", "storage_unavailable"},
    ("datasets-create", 429): {"rate_limited", "too_many_uploads"},
    ("datasets-create", 507): {"insufficient_storage"},
    ("datasets-delete", 409): {"dataset_busy", "dataset_in_use", "conflict"},
    ("datasets-preview", 409): {"dataset_not_ready"},
    ("jobs-create", 409): {"dataset_failed", "conflict"},
    ("jobs-create", 422): {
        "invalid_request", "invalid_json", "invalid_spec", "quota_exceeded", "no_gpu_worker",
        "idempotency_key_reused",
    },
    ("jobs-create", 429): {"quota_exceeded"},
    ("jobs-rerun", 409): {"dataset_failed", "conflict"},
    ("jobs-rerun", 422): {"invalid_request", "invalid_spec", "quota_exceeded", "no_gpu_worker"},
    ("jobs-rerun", 429): {"quota_exceeded"},
    ("jobs-cancel", 409): {"job_finished", "conflict"},
    ("jobs-resume", 409): {"job_not_resumable", "conflict"},
    ("jobs-resume", 422): {"invalid_request", "quota_exceeded"},
    ("jobs-resume", 429): {"quota_exceeded"},
    ("jobs-delete", 409): {"job_not_finished", "job_has_model", "job_shards_in_use", "conflict"},
    ("models-delete", 409): {"model_in_use", "conflict"},
    ("models-predict", 409): {"model_not_deployed"},
    ("models-predict", 413): {"too_many_rows", "body_too_large"},
    ("models-predict", 422): {"invalid_request", "invalid_json", "invalid_input", "invalid_arrow"},
    ("models-predict", 429): {"rate_limited"},
    **{
        (operation_id, status): codes
        for operation_id in ("model-names-predict-version", "model-names-predict-alias")
        for status, codes in (
            (409, {"model_not_deployed"}),
            (413, {"too_many_rows", "body_too_large"}),
            (422, {"invalid_request", "invalid_json", "invalid_input", "invalid_arrow"}),
            (429, {"rate_limited"}),
        )
    },
    ("model-names-set-alias", 409): {"version_not_deployed"},
    ("models-batch-predictions-create", 409): {
        "model_not_deployed", "dataset_not_ready", "conflict",
    },
    ("models-batch-predictions-create", 422): {
        "invalid_request", "invalid_json", "missing_column", "column_type_mismatch",
        "idempotency_key_reused",
    },
    ("models-batch-predictions-output", 409): {"not_ready"},
    ("sweeps-create", 409): {"dataset_not_ready", "conflict"},
    ("sweeps-create", 422): {
        "invalid_request", "invalid_json", "invalid_sweep", "invalid_spec", "quota_exceeded",
        "idempotency_key_reused",
    },
    ("sweeps-create", 429): {"quota_exceeded"},
    ("sweeps-cancel", 409): {"sweep_finished", "conflict"},
    ("health-ready", 503): {"not_ready"},
}  # fmt: skip
# Which object a 404 names: the one in the path, or the body's dataset for a new job.
NOT_FOUND_KIND = {"datasets": "dataset", "jobs": "job", "models": "model", "sweeps": "sweep"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    with TestClient(create_app()) as client:
        response = client.get("/openapi.json")
    assert response.status_code == 200
    return dict(response.json())


def error_examples(document: dict[str, Any]) -> list[tuple[str, str, int, dict[str, Any]]]:
    found = []
    for path, methods in document["paths"].items():
        for operation in methods.values():
            for status, response in operation["responses"].items():
                media = response.get("content", {}).get("application/json", {})
                if media.get("schema", {}).get("$ref", "").endswith("/ErrorResponse"):
                    error = media["example"]["error"]
                    found.append((operation["operationId"], path, int(status), error))
    return found


def test_every_error_example_is_an_error_its_operation_returns(document: dict[str, Any]) -> None:
    wrong = []
    examples = error_examples(document)
    for operation_id, _, status, error in examples:
        allowed = OPERATION.get((operation_id, status), COMMON.get(status))
        assert allowed is not None, f"no codes known for {operation_id} {status}: add them"
        if error["code"] not in allowed:
            wrong.append(f"{operation_id} {status}: {error['code']} not in {sorted(allowed)}")
    assert not wrong, "\n".join(wrong)
    assert len(examples) > 100


def test_not_found_examples_name_the_object_looked_for(document: dict[str, Any]) -> None:
    for operation_id, path, status, error in error_examples(document):
        if status != 404:
            continue
        if operation_id == "jobs-create":
            assert error["param"] == "dataset_id" and "No dataset with id" in error["message"]
        elif operation_id == "sweeps-create":
            assert error["param"] == "template.dataset_id"
            assert "No dataset with id" in error["message"]
        elif "{batch_id}" in path:
            assert "No batch prediction with id" in error["message"], operation_id
        elif operation_id in ("model-names-predict-version", "model-names-set-alias"):
            assert error["param"] == "version" and " has no version " in error["message"]
        elif operation_id in ("model-names-predict-alias", "model-names-delete-alias"):
            assert error["param"] == "alias" and " has no alias " in error["message"]
        elif operation_id.startswith("model-names-"):
            assert error["param"] == "name" and error["message"].startswith("No model named ")
        else:
            kind = NOT_FOUND_KIND[operation_id.split("-")[0]]
            assert error["message"].startswith(f"No {kind} with id"), operation_id


def test_the_upload_form_names_the_dataset_as_its_example_does(document: dict[str, Any]) -> None:
    form = document["paths"]["/v1/datasets"]["post"]["requestBody"]["content"]
    ref = form["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[-1]
    name = document["components"]["schemas"][ref]["properties"]["name"]
    # Swagger UI pre-fills a form field from the property's own example, else "string".
    assert name["example"] == form["multipart/form-data"]["example"]["name"] == "iris"


def test_the_examples_in_order_train_a_deployed_model_that_predicts(
    client: TestClient,
    sessions: sessionmaker[Session],
    store: BlobStore,
    params: ParamStore,
) -> None:
    document = client.get("/openapi.json").json()
    components = document["components"]["schemas"]
    form = document["paths"]["/v1/datasets"]["post"]["requestBody"]["content"]
    upload = client.post(
        "/v1/datasets",
        files={"file": ("iris.csv", table_to_csv(iris_table()))},
        data={"name": form["multipart/form-data"]["example"]["name"]},
    )
    assert upload.status_code == 201, upload.text
    dataset = upload.json()
    assert dataset["name"] == "iris"
    with session_scope(sessions) as session:
        ingest_dataset(session, store, dataset["id"])
    ready = client.get(f"/v1/datasets/{dataset['id']}").json()
    shown = components["DatasetOut"]["example"]
    assert (ready["name"], ready["rows"], ready["columns"]) == (
        shown["name"],
        shown["rows"],
        shown["columns"],
    )
    preview = client.get(f"/v1/datasets/{dataset['id']}/preview", params={"limit": 1}).json()
    assert preview["data"] == components["DatasetPreviewOut"]["example"]["data"]

    # The example's own id exists nowhere; the field's description says to paste the upload's.
    assert "paste" in components["JobSpec"]["properties"]["dataset_id"]["description"]
    spec = {**components["JobSpec"]["example"], "dataset_id": dataset["id"]}
    created = client.post("/v1/jobs", json=spec)
    assert created.status_code == 201, created.text
    run_job(sessions, store, params, created.json()["id"])
    job = client.get(f"/v1/jobs/{created.json()['id']}").json()
    assert job["status"] == "succeeded", job["error"]

    model = client.get(f"/v1/models/{job['model_id']}").json()
    assert model["gate"]["passed"] is True, model["gate"]
    assert model["status"] == "deployed"
    assert {f["name"] for f in model["features"]} == set(spec["features"])
    shown = components["ModelOut"]["example"]
    assert model["features"] == shown["features"]
    assert set(model["metrics"]) == set(shown["metrics"])

    predict_example = components["PredictRequest"]["example"]
    predicted = client.post(f"/v1/models/{job['model_id']}/predict", json=predict_example)
    assert predicted.status_code == 200, predicted.text
    assert predicted.json()["predictions"] == components["PredictionOut"]["example"]["predictions"]


def test_the_sweep_example_runs_as_shown_and_its_best_model_predicts(
    client: TestClient,
    sessions: sessionmaker[Session],
    store: BlobStore,
    params: ParamStore,
) -> None:
    document = client.get("/openapi.json").json()
    components = document["components"]["schemas"]
    upload = client.post("/v1/datasets", files={"file": ("iris.csv", table_to_csv(iris_table()))})
    with session_scope(sessions) as session:
        ingest_dataset(session, store, upload.json()["id"])
    example = components["SweepSpec"]["example"]
    assert "paste" in components["SweepSpec"]["properties"]["template"]["description"]
    body = {**example, "template": {**example["template"], "dataset_id": upload.json()["id"]}}
    created = client.post("/v1/sweeps", json=body)
    assert created.status_code == 201, created.text
    run_sweep(sessions, store, params, created.json()["id"])
    sweep = client.get(f"/v1/sweeps/{created.json()['id']}").json()
    assert sweep["status"] == "succeeded", sweep["error"]
    assert len(sweep["trials"]) == example["max_trials"]
    assert set(sweep["trials"][0]) == set(components["TrialOut"]["example"])
    assert set(sweep) == set(components["SweepOut"]["example"])
    predicted = client.post(
        f"/v1/models/{sweep['model_id']}/predict", json=components["PredictRequest"]["example"]
    )
    assert predicted.status_code == 200, predicted.text
