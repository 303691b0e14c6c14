from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.nul_characters import refuse_nul_field


class ColumnSchema(BaseModel):
    name: str
    dtype: Literal["int", "float", "bool", "string"]
    missing: int = Field(description="Rows with no value in this column.")
    min: float | None = Field(
        default=None, description="Numbers and booleans (as 0/1): the least value present."
    )
    max: float | None = Field(default=None, description="The greatest value present.")
    mean: float | None = Field(
        default=None, description="The mean of the values present (a boolean's share of true)."
    )
    distinct: int | None = Field(
        default=None,
        description="Text: how many distinct values, counted up to 1 000; null past that "
        "(and for other columns).",
    )


class DatasetPreviewOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "object": "dataset.preview",
                "dataset_id": "ds_4f1c2a9b8e7d6c5b4a3f2e1d",
                "data": [
                    {
                        "sepal_length": 5.1,
                        "sepal_width": 3.5,
                        "petal_length": 1.4,
                        "petal_width": 0.2,
                        "species": "setosa",
                    }
                ],
                "has_more": True,
            }
        }
    )

    object: Literal["dataset.preview"] = "dataset.preview"
    dataset_id: str
    data: list[dict[str, Any]] = Field(description="The first rows, column: value.")
    has_more: bool = Field(description="Whether the dataset has rows beyond these.")


class DatasetDeletedOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {"id": "ds_4f1c2a9b8e7d6c5b4a3f2e1d", "object": "dataset", "deleted": True}
        }
    )

    id: str
    object: Literal["dataset"] = "dataset"
    deleted: Literal[True] = True


class DatasetImport(BaseModel):
    """An object to import, read with the server's credentials."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"example": {"url": "s3://datasets/iris/iris.csv", "name": "iris"}},
    )

    url: str = Field(
        max_length=1100,
        description="s3://bucket/key of a CSV, Parquet or JSON Lines object, under a "
        "prefix the operator allows (`SHARDTRAIN_IMPORT_ALLOWED_PREFIXES`).",
    )
    name: str | None = Field(
        default=None, max_length=255, description="A label; defaults to the object's name."
    )

    _no_nul_characters = field_validator("*")(refuse_nul_field)


class DatasetOut(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "example": {
                "id": "ds_4f1c2a9b8e7d6c5b4a3f2e1d",
                "object": "dataset",
                "name": "iris",
                "format": "csv",
                "bytes": 4551,
                "sha256": "6f1ed002ab5595859014ebf0951522d9d6a6f3e4a6b5c8e3d4b9c2e1f0a1b2c3",
                "source_url": None,
                "status": "ready",
                "rows": 150,
                "columns": [
                    {
                        "name": "sepal_length",
                        "dtype": "float",
                        "missing": 0,
                        "min": 4.3,
                        "max": 7.9,
                        "mean": 5.84333333333,
                        "distinct": None,
                    },
                    {
                        "name": "sepal_width",
                        "dtype": "float",
                        "missing": 0,
                        "min": 2.0,
                        "max": 4.4,
                        "mean": 3.05733333333,
                        "distinct": None,
                    },
                    {
                        "name": "petal_length",
                        "dtype": "float",
                        "missing": 0,
                        "min": 1.0,
                        "max": 6.9,
                        "mean": 3.758,
                        "distinct": None,
                    },
                    {
                        "name": "petal_width",
                        "dtype": "float",
                        "missing": 0,
                        "min": 0.1,
                        "max": 2.5,
                        "mean": 1.19933333333,
                        "distinct": None,
                    },
                    {
                        "name": "species",
                        "dtype": "string",
                        "missing": 0,
                        "min": None,
                        "max": None,
                        "mean": None,
                        "distinct": 3,
                    },
                ],
                "error": None,
                "created_at": 1767225600,
            }
        },
    )

    id: str
    object: Literal["dataset"] = "dataset"
    name: str
    format: str
    bytes: int
    sha256: str | None = Field(
        description="Of the stored bytes; null while an imported object is being copied."
    )
    source_url: str | None = Field(
        default=None, description="The object an imported dataset was copied from."
    )
    status: Literal["processing", "ready", "failed"]
    rows: int | None
    columns: list[ColumnSchema] | None
    error: str | None
    created_at: int


# Components of their own, so generated clients name the two bodies after them
# (`DatasetUpload`, `DatasetImport`) rather than after the route and content type.
UPLOAD_FORM_SCHEMA: dict[str, Any] = {
    "title": "DatasetUpload",
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {
            "type": "string",
            "format": "binary",
            "description": "CSV (header row), Parquet or JSON Lines.",
        },
        "name": {
            "type": "string",
            "maxLength": 255,
            "description": "A label; defaults to the file name.",
            # Without it Swagger UI pre-fills the field with "string".
            "example": "iris",
        },
    },
}
