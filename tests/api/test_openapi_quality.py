"""The OpenAPI document is what generated clients and the Swagger UI are built from:
every operation named, tagged and described, every body and response with an example,
and every example a valid instance of its model."""

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from app.datasets.schemas import DatasetDeletedOut, DatasetOut, DatasetPreviewOut
from app.errors import ErrorResponse
from app.jobs.schemas import EventOut, JobOut, RoundMetricsOut
from app.jobs.spec import JobSpec
from app.main import create_app
from app.model_names.schemas import (
    ModelAliasChangeOut,
    ModelAliasOut,
    ModelNameOut,
    ModelNameSummaryOut,
    SetAliasRequest,
)
from app.registry.schemas import (
    BatchPredictionCreate,
    BatchPredictionOut,
    ModelOut,
    PredictionOut,
    PredictRequest,
)
from app.sweeps.schemas import SweepEventOut, SweepOut, TrialOut
from app.sweeps.spec import SweepSpec

# Media types whose examples would be bytes: nothing useful to show.
BINARY = {
    "application/octet-stream",
    "application/vnd.apache.parquet",
    "application/vnd.apache.arrow.stream",
    "image/png",
}

MODELS: dict[str, type[BaseModel]] = {
    m.__name__: m
    for m in (
        DatasetOut, DatasetPreviewOut, DatasetDeletedOut, JobSpec, JobOut, EventOut,
        RoundMetricsOut, ModelOut, PredictRequest, PredictionOut, BatchPredictionCreate,
        BatchPredictionOut, ErrorResponse, ModelNameOut, ModelNameSummaryOut, ModelAliasOut,
        ModelAliasChangeOut, SetAliasRequest, SweepSpec, SweepOut, TrialOut, SweepEventOut,
    )
}  # fmt: skip


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    # The document needs no database: a bare app serves it.
    with TestClient(create_app()) as client:
        response = client.get("/openapi.json")
    assert response.status_code == 200
    return dict(response.json())


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    ]


def component(document: dict[str, Any], schema: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    name = schema.get("$ref", "").rsplit("/", 1)[-1]
    return name, document["components"]["schemas"].get(name, {})


def example_of(document: dict[str, Any], media: dict[str, Any]) -> Any:
    if "example" in media:
        return media["example"]
    _, schema = component(document, media.get("schema", {}))
    return schema.get("example")


def test_operation_ids_are_unique_and_named_after_their_tag(document: dict[str, Any]) -> None:
    ids = [op["operationId"] for _, _, op in operations(document)]
    assert len(ids) == len(set(ids))
    for method, path, op in operations(document):
        assert op.get("tags"), f"{method} {path} has no tag"
        assert re.fullmatch(rf"{op['tags'][0]}(-[a-z]+)+", op["operationId"]), op["operationId"]
    tags = {t["name"]: t.get("description") for t in document["tags"]}
    assert all(tags.values()) and {op["tags"][0] for _, _, op in operations(document)} <= set(tags)


def test_every_operation_has_a_summary_and_description(document: dict[str, Any]) -> None:
    for method, path, op in operations(document):
        assert op.get("summary") and len(op.get("description", "")) > 20, f"{method} {path}"


def test_every_request_body_is_described_with_an_example(document: dict[str, Any]) -> None:
    bodies = 0
    for method, path, op in operations(document):
        if "requestBody" not in op:
            continue
        bodies += 1
        assert op["requestBody"].get("description"), f"{method} {path}"
        for media_type, media in op["requestBody"]["content"].items():
            if media_type not in BINARY:
                assert example_of(document, media) is not None, f"{method} {path} {media_type}"
    assert bodies >= 4


def test_every_response_is_described_with_an_example(document: dict[str, Any]) -> None:
    for method, path, op in operations(document):
        for status, response in op["responses"].items():
            where = f"{method} {path} {status}"
            assert response.get("description"), where
            for media_type, media in response.get("content", {}).items():
                if media_type not in BINARY:
                    assert example_of(document, media) is not None, f"{where} {media_type}"


def test_every_example_is_a_valid_instance_of_its_model(document: dict[str, Any]) -> None:
    checked = 0
    for _, _, op in operations(document):
        medias = [*op.get("requestBody", {}).get("content", {}).values()]
        medias += [m for r in op["responses"].values() for m in r.get("content", {}).values()]
        for media in medias:
            name, schema = component(document, media.get("schema", {}))
            example = example_of(document, media)
            if name in MODELS and example is not None:
                MODELS[name].model_validate(example)
                checked += 1
            elif name.startswith("ListResponse_") and example is not None:
                item = component(document, schema["properties"]["data"]["items"])[0]
                for row in example["data"]:
                    MODELS[item].model_validate(row)
                checked += 1
    assert checked > 30


def test_error_examples_carry_the_type_of_their_status(document: dict[str, Any]) -> None:
    seen = set()
    for _, _, op in operations(document):
        for status, response in op["responses"].items():
            media = response.get("content", {}).get("application/json", {})
            if component(document, media.get("schema", {}))[0] == "ErrorResponse":
                error = media["example"]["error"]
                seen.add(status)
                expected = {"401": "authentication_error", "404": "not_found_error"}
                assert error["type"] == expected.get(status, error["type"])
    assert {"401", "404", "409", "413", "422", "429"} <= seen
