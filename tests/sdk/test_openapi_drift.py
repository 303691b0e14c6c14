"""The SDK's models against the server's /openapi.json: a field the server adds, renames or
retypes in a response (or a spec field it changes) fails here, not in a user's program."""

from typing import Any

import pytest
from pydantic import BaseModel

import shardtrain
from app.config import Settings
from app.main import create_app
from shardtrain import models, spec

# Server component -> the SDK model that reads (or, for the spec, writes) it.
RESPONSES: dict[str, type[BaseModel]] = {
    "DatasetOut": models.Dataset,
    "ColumnSchema": models.Column,
    "DatasetPreviewOut": models.DatasetPreview,
    "DatasetDeletedOut": models.DatasetDeleted,
    "JobDeletedOut": models.JobDeleted,
    "ModelDeletedOut": models.ModelDeleted,
    "JobOut": models.Job,
    "Progress": models.Progress,
    "JobError": models.JobError,
    "EventOut": models.Event,
    "RoundMetricsOut": models.RoundMetrics,
    "ModelOut": models.Model,
    "FeatureOut": models.Feature,
    "GateOut": models.Gate,
    "ComparisonOut": models.Comparison,
    "FeatureImportanceOut": models.FeatureImportance,
    "CoefficientOut": models.Coefficient,
    "PredictionOut": models.Prediction,
    "BatchPredictionOut": models.BatchPrediction,
    "ModelNameSummaryOut": models.ModelNameSummary,
    "ModelNameOut": models.ModelName,
    "ModelVersionOut": models.ModelVersion,
    "ModelAliasOut": models.ModelAlias,
    "ModelAliasChangeOut": models.ModelAliasChange,
    "SweepOut": models.Sweep,
    "TrialOut": models.SweepTrial,
    "BestTrialOut": models.BestTrial,
    "SweepEventOut": models.SweepEvent,
}
SPEC: dict[str, type[BaseModel]] = {
    "JobSpec": spec.JobSpec,
    "ModelSpec": spec.ModelSpec,
    "GradientBoostedTreesSpec": spec.GradientBoostedTreesSpec,
    "PreprocessingSpec": spec.PreprocessingSpec,
    "TrainingSpec": spec.TrainingSpec,
    "EarlyStoppingSpec": spec.EarlyStoppingSpec,
    "DistributionSpec": spec.DistributionSpec,
    "ValidationSpec": spec.ValidationSpec,
    "DeployGate": spec.DeployGate,
    "InitFrom": spec.InitFrom,
    "SweepSpec": spec.SweepSpec,
    "LogUniform": spec.LogUniform,
    "Uniform": spec.Uniform,
    "IntRange": spec.IntRange,
    "Choice": spec.Choice,
}
MAPPED = {**RESPONSES, **SPEC}
# Server components that are no object but any JSON value (pydantic's JsonValue, `{}`):
# the SDK must take any value there too.
ANY_VALUE = {"JsonValue"}
# The operations the SDK calls.
SDK_OPERATIONS = {
    "datasets-create", "datasets-list", "datasets-get", "datasets-delete", "datasets-preview",
    "jobs-create", "jobs-list", "jobs-get", "jobs-metrics", "jobs-rerun", "jobs-resume",
    "jobs-cancel", "jobs-events", "jobs-delete", "models-list", "models-get", "models-predict",
    "models-deploy", "models-undeploy", "models-delete", "models-artifact",
    "models-batch-predictions-create",
    "models-batch-predictions-get", "models-batch-predictions-output", "model-names-list",
    "model-names-get", "model-names-predict-version", "model-names-predict-alias",
    "model-names-set-alias", "model-names-delete-alias", "model-names-alias-changes",
    "sweeps-create", "sweeps-list", "sweeps-get", "sweeps-trials", "sweeps-cancel",
    "sweeps-events", "sweeps-trials-chart",
}  # fmt: skip
CONSTRAINTS = (
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength",
    "minItems", "maxItems", "minProperties", "maxProperties", "pattern",
)  # fmt: skip


@pytest.fixture(scope="module")
def openapi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    data_dir = tmp_path_factory.mktemp("openapi")
    settings = Settings(database_url=f"sqlite:///{data_dir / 'x.db'}", data_dir=data_dir)
    return create_app(settings).openapi()


def _ref_name(schema: dict[str, Any]) -> str:
    return str(schema["$ref"]).rsplit("/", 1)[-1]


def _variants(schema: dict[str, Any]) -> list[dict[str, Any]]:
    for union in ("anyOf", "oneOf"):
        if union in schema:
            return [v for part in schema[union] for v in _variants(part)]
    return [schema]


def _enum(schema: dict[str, Any]) -> set[Any] | None:
    if "const" in schema:
        return {schema["const"]}
    return set(schema["enum"]) if "enum" in schema else None


def _accepts(sdk: dict[str, Any], server: dict[str, Any], sdk_defs: dict[str, Any]) -> bool:
    """Whether a value valid for the server's schema is valid for the SDK's."""
    if "$ref" in sdk and ("$ref" not in server or _ref_name(server) in ANY_VALUE):
        return _accepts(sdk_defs[_ref_name(sdk)], server, sdk_defs)
    if not sdk or (sdk.get("type") is None and "$ref" not in sdk):
        return True  # Any
    if "$ref" in server:
        wanted = MAPPED.get(_ref_name(server))
        return "$ref" in sdk and wanted is not None and _ref_name(sdk) == wanted.__name__
    server_type, sdk_type = server.get("type"), sdk.get("type")
    if server_type != sdk_type and not (server_type == "integer" and sdk_type == "number"):
        return False
    server_enum, sdk_enum = _enum(server), _enum(sdk)
    if sdk_enum is not None and (server_enum is None or not server_enum <= sdk_enum):
        return False
    if server_type == "array":
        return _compatible(sdk.get("items", {}), server.get("items", {}), sdk_defs)
    if server_type == "object" and isinstance(server.get("additionalProperties"), dict):
        extra = sdk.get("additionalProperties", True)
        return extra is True or _compatible(extra, server["additionalProperties"], sdk_defs)
    return True


def _compatible(sdk: dict[str, Any], server: dict[str, Any], sdk_defs: dict[str, Any]) -> bool:
    sdk_variants = _variants(sdk)
    return all(any(_accepts(d, s, sdk_defs) for d in sdk_variants) for s in _variants(server))


def _sdk_schema(model: type[BaseModel]) -> tuple[dict[str, Any], dict[str, Any]]:
    schema = model.model_json_schema(ref_template="#/$defs/{model}")
    defs = schema.get("$defs", {})
    return schema, defs


def _reachable(openapi: dict[str, Any]) -> set[str]:
    components = openapi["components"]["schemas"]
    todo: list[Any] = []
    for path in openapi["paths"].values():
        for operation in path.values():
            if operation.get("operationId") not in SDK_OPERATIONS:
                continue
            todo.append(operation.get("requestBody", {}))
            todo.extend(r for code, r in operation["responses"].items() if code.startswith("2"))
    seen: set[str] = set()
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            if "$ref" in node and _ref_name(node) not in seen:
                seen.add(_ref_name(node))
                todo.append(components[_ref_name(node)])
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    return seen


def test_every_schema_the_sdk_reads_or_writes_has_a_model(openapi: dict[str, Any]) -> None:
    reachable = _reachable(openapi)
    lists = {n for n in reachable if n.startswith("ListResponse_")}
    assert lists, "the list envelopes are read as shardtrain.Page"
    # Bodies the SDK builds itself from its arguments, not from a model.
    built = {
        "PredictRequest", "BatchPredictionCreate", "DatasetImport", "DatasetUpload",
        "SetAliasRequest",
    }  # fmt: skip
    assert reachable - lists - built - ANY_VALUE <= set(MAPPED), reachable - set(MAPPED)
    page_fields = set(models.Page.model_fields)
    for name in lists:
        assert set(openapi["components"]["schemas"][name]["properties"]) <= page_fields


@pytest.mark.parametrize("component", sorted(MAPPED))
def test_every_server_field_is_in_the_sdk_with_a_compatible_type(
    openapi: dict[str, Any], component: str
) -> None:
    server = openapi["components"]["schemas"][component]
    sdk_schema, sdk_defs = _sdk_schema(MAPPED[component])
    sdk_props = sdk_schema["properties"]
    missing = set(server["properties"]) - set(sdk_props)
    assert not missing, f"{component}: the SDK's {MAPPED[component].__name__} lacks {missing}"
    for name, prop in server["properties"].items():
        assert _compatible(sdk_props[name], prop, sdk_defs), (
            f"{component}.{name}: server {prop} vs SDK {sdk_props[name]}"
        )
    example = server.get("example")
    if example is not None and component in RESPONSES:
        MAPPED[component].model_validate(example)


@pytest.mark.parametrize("component", sorted(SPEC))
def test_the_spec_sends_only_server_fields_with_the_same_defaults_and_bounds(
    openapi: dict[str, Any], component: str
) -> None:
    server = openapi["components"]["schemas"][component]
    sdk_schema, _ = _sdk_schema(SPEC[component])
    assert set(sdk_schema["properties"]) == set(server["properties"])
    assert set(sdk_schema.get("required", [])) == set(server.get("required", []))
    for name, prop in server["properties"].items():
        mine = sdk_schema["properties"][name]
        assert mine.get("default") == prop.get("default"), f"{component}.{name} default"
        for variant_server, variant_sdk in zip(_variants(prop), _variants(mine), strict=True):
            for key in CONSTRAINTS:
                assert variant_sdk.get(key) == variant_server.get(key), f"{component}.{name} {key}"
            assert _enum(variant_sdk) == _enum(variant_server), f"{component}.{name} values"
            items_server, items_sdk = variant_server.get("items", {}), variant_sdk.get("items", {})
            for key in CONSTRAINTS:
                assert items_sdk.get(key) == items_server.get(key), f"{component}.{name}[] {key}"


def test_the_sdk_exports_every_model() -> None:
    for model in MAPPED.values():
        assert getattr(shardtrain, model.__name__) is model
