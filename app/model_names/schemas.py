from typing import Any, Literal

from pydantic import BaseModel, Field, JsonValue

from app.registry.schemas import GateOut


class ModelVersionOut(BaseModel):
    version: int
    model_id: str
    job_id: str
    status: Literal["deployed", "rejected", "undeployed"]
    metrics: dict[str, float] = Field(description="The version's scores on its holdout rows.")
    gate: GateOut | None
    created_at: int


_SUMMARY_EXAMPLE: dict[str, JsonValue] = {
    "id": "mnm_2c3d4e5f6a7b8c9d0e1f2a3b",
    "object": "model_name",
    "name": "churn",
    "latest_version": 2,
    "created_at": 1767225700,
    "updated_at": 1767312100,
}
_VERSION_EXAMPLES: list[JsonValue] = [
    {
        "version": version,
        "model_id": model_id,
        "job_id": job_id,
        "status": "deployed",
        "metrics": {"accuracy": accuracy},
        "gate": None,
        "created_at": created_at,
    }
    for version, model_id, job_id, accuracy, created_at in (
        (1, "mdl_0a1b2c3d4e5f6a7b8c9d0e1f", "job_9a8b7c6d5e4f3a2b1c0d9e8f", 0.91, 1767225700),
        (2, "mdl_1b2c3d4e5f6a7b8c9d0e1f2a", "job_8b7c6d5e4f3a2b1c0d9e8f7a", 0.93, 1767312100),
    )
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
        "json_schema_extra": {"example": {**_SUMMARY_EXAMPLE, "versions": _VERSION_EXAMPLES}}
    }

    versions: list[ModelVersionOut] = Field(description="Every version, oldest first.")


def version_out(model: Any) -> ModelVersionOut:
    return ModelVersionOut(
        version=model.version,
        model_id=model.id,
        job_id=model.job_id,
        status=model.status,
        metrics=model.metrics,
        gate=model.gate,
        created_at=model.created_at,
    )
