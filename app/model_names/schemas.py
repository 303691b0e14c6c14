from typing import Any, Literal

from pydantic import BaseModel, Field, JsonValue, field_validator

from app.nul_characters import refuse_nul_field
from app.registry.schemas import ComparisonOut, GateOut

ALIAS_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]*$"
REASON_MAX = 1000


class ModelVersionOut(BaseModel):
    version: int
    model_id: str
    job_id: str
    status: Literal["deployed", "rejected", "undeployed"]
    metrics: dict[str, float] = Field(description="The version's scores on its holdout rows.")
    gate: GateOut | None
    comparison: ComparisonOut | None = Field(
        default=None, description="The champion gate's head-to-head, when it decided."
    )
    aliases: list[str] = Field(default_factory=list, description="Aliases naming this version.")
    created_at: int


_ALIAS_EXAMPLE: dict[str, JsonValue] = {
    "alias": "champion",
    "version": 2,
    "model_id": "mdl_1b2c3d4e5f6a7b8c9d0e1f2a",
    "set_by": "job_8b7c6d5e4f3a2b1c0d9e8f7a",
    "reason": "accuracy 0.9300 beat version 1's 0.9100 by 0.0200 (at least 0.005) "
    "on 3000 holdout rows",
    "updated_at": 1767312100,
}


class ModelAliasOut(BaseModel):
    model_config = {"json_schema_extra": {"example": _ALIAS_EXAMPLE}}

    alias: str
    version: int
    model_id: str
    set_by: str = Field(
        description="Who moved it last: an API key's id (`key_…`), or the job (`job_…`) "
        "whose champion gate promoted the version."
    )
    reason: str | None
    updated_at: int


class SetAliasRequest(BaseModel):
    model_config = {
        "extra": "forbid",
        "json_schema_extra": {"example": {"version": 1, "reason": "v2 mislabels returns"}},
    }

    version: int = Field(ge=1, le=2**31 - 1, description="The version the alias names.")
    reason: str | None = Field(
        default=None,
        min_length=1,
        max_length=REASON_MAX,
        description="Why; kept in the alias's history. Required to move `champion`.",
    )

    _no_nul_characters = field_validator("*")(refuse_nul_field)


class ModelAliasChangeOut(BaseModel):
    model_config = {
        "from_attributes": True,
        "json_schema_extra": {
            "example": {
                "id": "mac_3d4e5f6a7b8c9d0e1f2a3b4c",
                "object": "model_alias_change",
                "alias": "champion",
                "from_version": 1,
                "to_version": 2,
                "set_by": "job_8b7c6d5e4f3a2b1c0d9e8f7a",
                "reason": _ALIAS_EXAMPLE["reason"],
                "created_at": 1767312100,
            }
        },
    }

    id: str
    object: Literal["model_alias_change"] = "model_alias_change"
    alias: str
    from_version: int | None = Field(description="Null when the alias was new.")
    to_version: int | None = Field(description="Null when the alias was deleted.")
    set_by: str
    reason: str | None
    created_at: int


_SUMMARY_EXAMPLE: dict[str, JsonValue] = {
    "id": "mnm_2c3d4e5f6a7b8c9d0e1f2a3b",
    "object": "model_name",
    "name": "churn",
    "latest_version": 2,
    "created_at": 1767225700,
    "updated_at": 1767312100,
}
_COMPARISON_EXAMPLE: dict[str, JsonValue] = {
    "metric": "accuracy",
    "by": 0.005,
    "rows": 3000,
    "candidate": 0.93,
    "champion": 0.91,
    "champion_version": 1,
    "champion_model_id": "mdl_0a1b2c3d4e5f6a7b8c9d0e1f",
    "passed": True,
    "reason": _ALIAS_EXAMPLE["reason"],
}
_VERSION_ROWS: list[tuple[int, str, str, float, JsonValue, JsonValue, int]] = [
    (1, "mdl_0a1b2c3d4e5f6a7b8c9d0e1f", "job_9a8b7c6d5e4f3a2b1c0d9e8f", 0.91, None, [], 1767225700),
    (
        2,
        "mdl_1b2c3d4e5f6a7b8c9d0e1f2a",
        "job_8b7c6d5e4f3a2b1c0d9e8f7a",
        0.93,
        _COMPARISON_EXAMPLE,
        ["champion"],
        1767312100,
    ),
]
_VERSION_EXAMPLES: list[JsonValue] = [
    {
        "version": version,
        "model_id": model_id,
        "job_id": job_id,
        "status": "deployed",
        "metrics": {"accuracy": accuracy},
        "gate": None,
        "comparison": comparison,
        "aliases": aliases,
        "created_at": created_at,
    }
    for version, model_id, job_id, accuracy, comparison, aliases, created_at in _VERSION_ROWS
]


class ModelNameSummaryOut(BaseModel):
    model_config = {"json_schema_extra": {"example": _SUMMARY_EXAMPLE}}

    id: str
    object: Literal["model_name"] = "model_name"
    name: str
    latest_version: int = Field(description="The number the newest version got.")
    created_at: int
    updated_at: int = Field(description="When the last version was added.")


class ModelNameOut(ModelNameSummaryOut):
    model_config = {
        "json_schema_extra": {
            "example": {
                **_SUMMARY_EXAMPLE,
                "versions": _VERSION_EXAMPLES,
                "aliases": [_ALIAS_EXAMPLE],
            }
        }
    }

    versions: list[ModelVersionOut] = Field(description="Every version, oldest first.")
    aliases: list[ModelAliasOut] = Field(description="Every alias, by name.")


def version_out(model: Any, aliases: list[str]) -> ModelVersionOut:
    return ModelVersionOut(
        version=model.version,
        model_id=model.id,
        job_id=model.job_id,
        status=model.status,
        metrics=model.metrics,
        gate=model.gate,
        comparison=model.comparison,
        aliases=aliases,
        created_at=model.created_at,
    )
