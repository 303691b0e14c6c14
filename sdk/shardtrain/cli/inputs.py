"""Files the CLI reads: job and sweep specs (YAML or JSON) and prediction records (CSV, JSON,
JSON Lines). CSV cells are text, so they are converted to each feature's dtype."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import typer
import yaml

from shardtrain.models import Feature


def _read_text(path: Path) -> str:
    if str(path) == "-":
        return sys.stdin.read()
    try:
        return path.read_text()
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc.strerror}") from exc


def load_spec(path: Path, what: str = "the job spec") -> dict[str, Any]:
    """A spec file: `.json`, or YAML (which also reads JSON) for anything else."""
    text = _read_text(path)
    try:
        spec = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise typer.BadParameter(f"{path} is not valid JSON or YAML: {exc}") from exc
    if not isinstance(spec, dict):
        raise typer.BadParameter(f"{path} must hold one object ({what})")
    return spec


def _cell(value: str, dtype: str | None) -> Any:
    """An empty cell is missing; a cell that does not parse stays text, so the server's
    422 names the row and column."""
    if value == "":
        return None
    try:
        if dtype == "int":
            return int(value)
        if dtype == "float":
            return float(value)
    except ValueError:
        return value
    if dtype == "bool" and value.lower() in {"true", "false", "1", "0"}:
        return value.lower() in {"true", "1"}
    return value


def load_records(path: Path, features: list[Feature]) -> list[dict[str, Any]]:
    """`.csv` (header row), `.jsonl`/`.ndjson` (one object a line) or `.json` (a list of
    objects, or `{"inputs": [...]}` as the API takes it)."""
    text = _read_text(path)
    suffix = path.suffix.lower()
    if suffix in {".csv", ".tsv", ".txt"}:
        dtypes = {f.name: f.dtype for f in features}
        delimiter = "\t" if suffix == ".tsv" else ","
        rows = csv.DictReader(text.splitlines(), delimiter=delimiter)
        records = []
        for row in rows:
            if None in row:  # DictReader files cells past the header under None
                raise typer.BadParameter(
                    f"{path} line {rows.line_num}: more cells than the header has columns"
                )
            records.append({k: _cell(v or "", dtypes.get(k)) for k, v in row.items()})
        return records
    try:
        if suffix in {".jsonl", ".ndjson"}:
            loaded: Any = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            loaded = json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"{path} is not valid JSON: {exc}") from exc
    if isinstance(loaded, Mapping) and "inputs" in loaded:
        loaded = loaded["inputs"]
    if not isinstance(loaded, list) or not all(isinstance(r, dict) for r in loaded):
        raise typer.BadParameter(f"{path} must hold a list of records (objects)")
    return loaded
