"""Blob keys come from `app/storage/keys.py` alone, and their layout is pinned: a key
that changed shape would orphan every blob stored under the old one."""

import ast
from pathlib import Path

from app.storage import keys

ROOT = Path(__file__).resolve().parents[2]
PREFIXES = ("datasets/", "jobs/", "models/", "batch_predictions/")


def test_the_layout_is_pinned() -> None:
    assert keys.dataset_prefix("ds_1") == "datasets/ds_1"
    assert keys.dataset_upload("ds_1") == "datasets/ds_1/raw"
    assert keys.dataset_table("ds_1") == "datasets/ds_1/data.parquet"
    assert keys.job_prefix("job_1") == "jobs/job_1"
    assert keys.job_shard("job_1", 3) == "jobs/job_1/shards/3.npy"
    assert keys.job_validation("job_1") == "jobs/job_1/validation.npy"
    assert keys.job_holdout("job_1") == "jobs/job_1/holdout.npy"
    assert keys.job_checkpoint("job_1", 0) == "jobs/job_1/checkpoints/round-0.safetensors"
    assert keys.model_prefix("mdl_1") == "models/mdl_1"
    assert keys.model_artifact("mdl_1") == "models/mdl_1/model.safetensors"
    assert keys.model_onnx("mdl_1") == "models/mdl_1/model.onnx"
    assert keys.batch_prefix("bp_1") == "batch_predictions/bp_1"
    assert keys.batch_predictions("bp_1") == "batch_predictions/bp_1/predictions.parquet"


def test_a_jobs_copies_of_its_dataset_are_its_parts_not_its_checkpoints() -> None:
    copies = keys.job_dataset_copies("job_1")
    assert copies == [
        "jobs/job_1/shards",
        "jobs/job_1/validation.npy",
        "jobs/job_1/holdout.npy",
        "jobs/job_1/validation.binned",
        "jobs/job_1/holdout.binned",
    ]
    assert keys.job_shard("job_1", 0).startswith(copies[0] + "/")
    assert keys.job_binned_shard("job_1", 0).startswith(copies[0] + "/")
    binned_holdout = keys.part_array(keys.job_binned_holdout("job_1"), "bins")
    assert binned_holdout.startswith(copies[4] + "/")
    assert not any(keys.job_checkpoint("job_1", 1).startswith(copy) for copy in copies)


def _literal_start(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values:
        first = node.values[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            return first.value
    return None


def test_no_other_module_builds_a_blob_key() -> None:
    own = ROOT / "app" / "storage" / "keys.py"
    found = []
    for path in sorted([*(ROOT / "app").rglob("*.py"), *(ROOT / "workers").rglob("*.py")]):
        if path == own:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            start = _literal_start(node)
            if start is not None and start.startswith(PREFIXES):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {start!r}")
    assert found == []
