"""The OpenAPI document as clients and the Swagger UI read it: tag descriptions, the
predict body as a named component, and an example on every JSON response.

Error responses share one schema, so their examples are filled in here from the
status code rather than repeated on every route; list envelopes are generic, so
theirs are built from their item's example."""

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from app.datasets.schemas import UPLOAD_FORM_SCHEMA, DatasetImport
from app.errors import TYPE_BY_STATUS
from app.registry.schemas import PredictRequest
from app.sweeps.openapi_examples import SWEEP_ERROR_EXAMPLES

TAGS: list[dict[str, Any]] = [
    {
        "name": "datasets",
        "description": "Upload CSV, Parquet or JSON Lines; a worker parses it into typed "
        "columns before jobs can train on it.",
    },
    {
        "name": "jobs",
        "description": "A job shards a dataset, trains one shard per worker, merges the "
        "parameters round after round and scores the result on a holdout.",
    },
    {
        "name": "models",
        "description": "Models that jobs produced: the deploy gate's decision, artifacts "
        "(safetensors, ONNX), online and batch predictions.",
    },
    {
        "name": "model-names",
        "description": "Named models: every succeeded job whose spec has `model_name` adds "
        "the next version of that name; aliases (`champion`, moved by the champion gate, "
        "and your own) name versions to predict with.",
    },
    {
        "name": "sweeps",
        "description": "Hyperparameter sweeps: trials are jobs on one preparation of the "
        "data, asked for by optuna and pruned on their validation loss; the best trial's "
        "model is the result.",
    },
    {"name": "health", "description": "Liveness and readiness probes; no API key needed."},
]

# What a client most often sees for each status, on any route; each example must be
# an error that every operation listing the status can return.
_ERROR_EXAMPLES: dict[int, tuple[str, str, str | None]] = {
    400: ("invalid_body", "The body could not be parsed: nesting too deep.", None),
    401: ("invalid_api_key", "The API key is not valid or was revoked.", None),
    404: ("not_found", "No object with id 'obj_9a8b7c6d5e4f3a2b1c0d9e8f'.", "id"),
    413: ("body_too_large", "The request body exceeds 33554432 bytes.", None),
    422: ("invalid_request", "limit: Input should be less than or equal to 100", "limit"),
    503: ("database_unavailable", "The database is unreachable; retry in a few seconds.", None),
}

_DATASET_ID = "ds_4f1c2a9b8e7d6c5b4a3f2e1d"
_JOB_ID = "job_9a8b7c6d5e4f3a2b1c0d9e8f"
_MODEL_ID = "mdl_0a1b2c3d4e5f6a7b8c9d0e1f"
_NO_DATASET = ("not_found", f"No dataset with id {_DATASET_ID!r}.", "id")
_NO_JOB = ("not_found", f"No job with id {_JOB_ID!r}.", "id")
_NO_MODEL = ("not_found", f"No model with id {_MODEL_ID!r}.", "id")

# The error an operation's own status most often means there, where the status-wide
# example above would name an error that operation never returns.
_OPERATION_ERROR_EXAMPLES: dict[tuple[str, int], tuple[str, str, str | None]] = {
    ("datasets-create", 400): (
        "truncated_body",
        "The body ended before its closing boundary. Nothing was stored; send the whole "
        "file again.",
        "file",
    ),
    ("datasets-create", 403): (
        "import_not_allowed",
        "Importing s3://datasets/private/iris.csv is not allowed: it is outside every "
        "prefix this server's operator allows imports from.",
        "url",
    ),
    ("datasets-create", 408): (
        "upload_timeout",
        "No bytes arrived for 60 s; the upload was abandoned and nothing was stored. "
        "Send the whole file again.",
        "file",
    ),
    ("datasets-create", 409): (
        "quota_exceeded",
        "This dataset would pass this account's max_stored_bytes of 107374182400 "
        "(107374000000 already stored); delete datasets to make room.",
        "file",
    ),
    ("datasets-create", 413): (
        "file_too_large",
        "The upload exceeds the limit of 10737418240 bytes.",
        "file",
    ),
    ("datasets-create", 415): (
        "unsupported_format",
        "Unsupported file: a zip archive is not CSV, Parquet or JSON Lines.",
        "file",
    ),
    ("datasets-create", 422): ("empty_file", "The uploaded file is empty.", "file"),
    ("datasets-create", 429): (
        "rate_limited",
        "More than 60 upload requests this minute (this account's upload_per_minute); "
        "retry in 12 s.",
        None,
    ),
    ("datasets-create", 502): (
        "storage_error",
        "Object storage refused to read s3://datasets/iris/iris.csv: InvalidObjectState.",
        "url",
    ),
    ("datasets-create", 503): (
        "storage_unavailable",
        "Object storage did not answer for s3://datasets/iris/iris.csv (ReadTimeoutError); "
        "nothing was recorded. Retry shortly.",
        "url",
    ),
    ("datasets-create", 507): (
        "insufficient_storage",
        "The server's storage is full; nothing was stored. Retry later, or ask the "
        "operator to free space.",
        "file",
    ),
    ("datasets-get", 404): _NO_DATASET,
    ("datasets-delete", 404): _NO_DATASET,
    ("datasets-delete", 409): (
        "dataset_in_use",
        f"Dataset {_DATASET_ID} is used by unfinished job(s): {_JOB_ID}.",
        "id",
    ),
    ("datasets-preview", 404): _NO_DATASET,
    ("datasets-preview", 409): (
        "dataset_not_ready",
        f"Dataset {_DATASET_ID} is processing; only a ready dataset has rows to show.",
        "id",
    ),
    ("jobs-create", 404): ("not_found", f"No dataset with id {_DATASET_ID!r}.", "dataset_id"),
    ("jobs-create", 409): (
        "dataset_failed",
        f"Dataset {_DATASET_ID} failed ingest: line 12: expected 5 fields, saw 4",
        "dataset_id",
    ),
    ("jobs-create", 422): (
        "invalid_spec",
        "target 'Species' is not a column of the dataset",
        "target",
    ),
    ("jobs-create", 429): (
        "quota_exceeded",
        "This account already has 8 unfinished jobs, its max_running_jobs; wait for one "
        "to end or cancel one.",
        None,
    ),
    ("jobs-get", 404): _NO_JOB,
    ("jobs-metrics", 404): _NO_JOB,
    ("jobs-metrics-chart", 404): _NO_JOB,
    ("jobs-events", 404): _NO_JOB,
    ("jobs-rerun", 404): _NO_JOB,
    ("jobs-rerun", 429): (
        "quota_exceeded",
        "This account already has 8 unfinished jobs, its max_running_jobs; wait for one "
        "to end or cancel one.",
        None,
    ),
    ("jobs-rerun", 409): (
        "dataset_failed",
        f"Dataset {_DATASET_ID} failed ingest: line 12: expected 5 fields, saw 4",
        "dataset_id",
    ),
    ("jobs-rerun", 422): (
        "invalid_spec",
        "target 'species' is not a column of the dataset",
        "target",
    ),
    ("jobs-delete", 404): _NO_JOB,
    ("jobs-delete", 409): (
        "job_not_finished",
        f"Job {_JOB_ID} is running; cancel it, or wait for it to finish, first.",
        "id",
    ),
    ("jobs-resume", 404): _NO_JOB,
    ("jobs-resume", 429): (
        "quota_exceeded",
        "This account already has 8 unfinished jobs, its max_running_jobs; wait for one "
        "to end or cancel one.",
        None,
    ),
    ("jobs-resume", 409): (
        "job_not_resumable",
        f"Job {_JOB_ID} cannot be resumed: it is succeeded; only a failed or cancelled job "
        "resumes.",
        "id",
    ),
    ("jobs-cancel", 404): _NO_JOB,
    ("jobs-cancel", 409): (
        "job_finished",
        f"Job {_JOB_ID} already succeeded; it cannot be cancelled.",
        "id",
    ),
    ("models-get", 404): _NO_MODEL,
    ("models-deploy", 404): _NO_MODEL,
    ("models-undeploy", 404): _NO_MODEL,
    ("models-delete", 404): _NO_MODEL,
    ("models-delete", 409): (
        "model_in_use",
        f"Model {_MODEL_ID} is used by unfinished batch prediction(s): "
        "bp_5e6f7a8b9c0d1e2f3a4b5c6d.",
        "id",
    ),
    ("models-artifact", 404): _NO_MODEL,
    ("models-predict", 404): _NO_MODEL,
    ("models-predict", 409): (
        "model_not_deployed",
        f"Model {_MODEL_ID} is rejected; deploy it to serve predictions.",
        "model_id",
    ),
    ("models-predict", 413): (
        "too_many_rows",
        "10001 rows exceed the limit of 10000.",
        "inputs",
    ),
    ("models-predict", 422): (
        "invalid_input",
        "inputs[0] is missing column 'petal_width'",
        "inputs.0.petal_width",
    ),
    ("models-predict", 429): (
        "rate_limited",
        "More than 6000 predict requests this minute (this account's predict_per_minute); "
        "retry in 12 s.",
        None,
    ),
    ("model-names-get", 404): ("not_found", "No model named 'churn'.", "name"),
    ("model-names-get", 422): (
        "invalid_request",
        "name: String should match pattern '^[A-Za-z0-9][A-Za-z0-9._-]*$'",
        "name",
    ),
    ("model-names-predict-version", 404): (
        "not_found",
        "Model 'churn' has no version 3.",
        "version",
    ),
    ("model-names-predict-alias", 404): (
        "not_found",
        "Model 'churn' has no alias 'staging'.",
        "alias",
    ),
    ("model-names-set-alias", 404): ("not_found", "Model 'churn' has no version 3.", "version"),
    ("model-names-set-alias", 409): (
        "version_not_deployed",
        "Version 3 of 'churn' is rejected; only a deployed version can be champion "
        "(POST /v1/models/{model_id}/deploy deploys it).",
        "version",
    ),
    ("model-names-set-alias", 422): (
        "invalid_request",
        "reason: say why the champion is moved by hand; it is kept with the move.",
        "reason",
    ),
    ("model-names-delete-alias", 404): (
        "not_found",
        "Model 'churn' has no alias 'staging'.",
        "alias",
    ),
    ("model-names-delete-alias", 422): (
        "invalid_request",
        "reason: say why the champion is removed by hand; it is kept with the change.",
        "reason",
    ),
    ("model-names-alias-changes", 404): ("not_found", "No model named 'churn'.", "name"),
    ("models-batch-predictions-create", 404): _NO_MODEL,
    ("models-batch-predictions-create", 409): (
        "dataset_not_ready",
        f"Dataset {_DATASET_ID} is processing.",
        "dataset_id",
    ),
    ("models-batch-predictions-create", 422): (
        "missing_column",
        "dataset lacks feature column 'petal_width'",
        "dataset_id",
    ),
    ("models-batch-predictions-get", 404): (
        "not_found",
        "No batch prediction with id 'bp_5e6f7a8b9c0d1e2f3a4b5c6d'.",
        "id",
    ),
    ("models-batch-predictions-output", 404): (
        "not_found",
        "No batch prediction with id 'bp_5e6f7a8b9c0d1e2f3a4b5c6d'.",
        "id",
    ),
    ("models-batch-predictions-output", 409): (
        "not_ready",
        "Batch prediction bp_5e6f7a8b9c0d1e2f3a4b5c6d is running.",
        "batch_id",
    ),
    ("health-ready", 503): ("not_ready", "Not ready: redis unreachable.", None),
}
# A named model's version or alias predicts as its model does: the same errors.
_OPERATION_ERROR_EXAMPLES.update(
    {
        (named, status): example
        for (operation_id, status), example in list(_OPERATION_ERROR_EXAMPLES.items())
        if operation_id == "models-predict" and status != 404
        for named in ("model-names-predict-version", "model-names-predict-alias")
    }
)

_OPERATION_ERROR_EXAMPLES.update(SWEEP_ERROR_EXAMPLES)

PREDICT_BODY_REF = "#/components/schemas/PredictRequest"


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            _add_component(schema, PredictRequest)
            _add_component(schema, DatasetImport)
            components = schema["components"]["schemas"]
            components["DatasetUpload"] = UPLOAD_FORM_SCHEMA
            _restore_examples(schema, _app_models())
            _fill_examples(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add_component(schema: dict[str, Any], model: type[BaseModel]) -> None:
    # A route that reads its body itself (predict) refers to the model by name, so
    # generated clients get a class called after it rather than after the route.
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components[model.__name__] = model.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )


def _app_models() -> list[type[BaseModel]]:
    """Every pydantic model defined in this package (the API's shapes among them)."""
    found: list[type[BaseModel]] = []
    pending: list[type[BaseModel]] = [BaseModel]
    while pending:
        for subclass in pending.pop().__subclasses__():
            pending.append(subclass)
            if subclass.__module__.startswith("app."):
                found.append(subclass)
    return found


def _restore_examples(schema: dict[str, Any], models: list[type[BaseModel]]) -> None:
    # get_openapi drops None values everywhere, examples included, which would leave
    # required nullable fields (`"error": null`) out of the very examples that show them.
    components = schema.get("components", {}).get("schemas", {})
    for model in models:
        extra = model.model_config.get("json_schema_extra")
        if isinstance(extra, dict) and model.__name__ in components and "example" in extra:
            components[model.__name__]["example"] = extra["example"]


def _fill_examples(schema: dict[str, Any]) -> None:
    components = schema.get("components", {}).get("schemas", {})
    for operations in schema["paths"].values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                media = response.get("content", {}).get("application/json")
                if media is None or "example" in media or "examples" in media:
                    continue
                operation_id = operation.get("operationId", "")
                example = _example_for(media.get("schema", {}), components, status, operation_id)
                if example is not None:
                    media["example"] = example


def _example_for(
    schema: dict[str, Any], components: dict[str, Any], status: str, operation_id: str
) -> dict[str, Any] | None:
    name = schema.get("$ref", "").rsplit("/", 1)[-1]
    if name == "ErrorResponse" and status.isdigit():
        code, message, param = _OPERATION_ERROR_EXAMPLES.get(
            (operation_id, int(status)), _ERROR_EXAMPLES.get(int(status), ("api_error", "", None))
        )
        error_type = TYPE_BY_STATUS.get(int(status), "api_error")
        return {"error": {"type": error_type, "code": code, "message": message, "param": param}}
    component = components.get(name, {})
    if "example" in component:
        return None  # Swagger UI and generators read the component's own example
    if name.startswith("ListResponse_"):
        items = component.get("properties", {}).get("data", {}).get("items", {})
        item = components.get(items.get("$ref", "").rsplit("/", 1)[-1], {})
        if "example" in item:
            return {"object": "list", "data": [item["example"]], "has_more": False}
    return None
