"""The OpenAPI document as clients and the Swagger UI read it: tag descriptions, the
predict body as a named component, and an example on every JSON response.

Error responses share one schema, so their examples are filled in here from the
status code rather than repeated on every route; list envelopes are generic, so
theirs are built from their item's example."""

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from app.errors import TYPE_BY_STATUS
from app.registry.schemas import PredictRequest

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
    {"name": "health", "description": "Liveness and readiness probes; no API key needed."},
]

# What a client most often sees for each status; routes with a more specific error
# describe it in the response's description.
_ERROR_EXAMPLES: dict[int, tuple[str, str, str | None]] = {
    400: ("invalid_body", "The request body could not be parsed.", None),
    401: ("invalid_api_key", "The API key is not valid or was revoked.", None),
    404: ("not_found", "No job with id 'job_9a8b7c6d5e4f3a2b1c0d9e8f'.", "id"),
    409: ("dataset_not_ready", "Dataset ds_4f1c2a9b8e7d6c5b4a3f2e1d is still processing.", None),
    413: ("file_too_large", "The upload exceeds the limit of 10737418240 bytes.", "file"),
    415: ("unsupported_format", "A zip archive is not a CSV, Parquet or JSON Lines file.", "file"),
    422: (
        "invalid_request",
        "training.learning_rate: Input should be greater than 0",
        "training.learning_rate",
    ),
    429: ("rate_limited", "Over 600 predict requests a minute; retry after 12 s.", None),
    503: ("not_ready", "Not ready: redis unreachable.", None),
}

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
                example = _example_for(media.get("schema", {}), components, status)
                if example is not None:
                    media["example"] = example


def _example_for(
    schema: dict[str, Any], components: dict[str, Any], status: str
) -> dict[str, Any] | None:
    name = schema.get("$ref", "").rsplit("/", 1)[-1]
    if name == "ErrorResponse" and status.isdigit():
        code, message, param = _ERROR_EXAMPLES.get(int(status), ("api_error", "", None))
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
