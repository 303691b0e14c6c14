"""Split a dataset into holdout, validation and N training shards, fit preprocessing on
the training rows only, and write each part once as a float32 `.npy` file.

Two streaming passes over the Parquet file: the first fits the preprocessing, the
second appends each row to its part's `.npy` file. Memory is one record batch
plus the split's two bytes per row.
"""

import os
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from app.datasets.columns import feature_columns
from app.jobs.capacity import over_limit
from app.jobs.plan import ShardPlan
from app.jobs.spec import JobSpec
from app.storage import BlobStore, keys
from app.storage.temp_files import temp_prefix
from app.training.networks import NetworkConfig
from app.training.preprocessing import PreprocessingFitter, Preprocessor
from app.training.split import HOLDOUT, VALIDATION, assign_rows

BATCH_ROWS = 65_536
# Parts are float32: a value past this would be written as infinity, and training on
# it diverges instead of saying which column holds it.
FLOAT32_MAX = float(np.finfo(np.float32).max)


class ShardingError(ValueError):
    def __init__(self, message: str, code: str = "invalid_data") -> None:
        super().__init__(message)
        self.code = code


def _target_values(batch: pa.RecordBatch, name: str, task: str) -> np.ndarray:
    column = batch.column(name)
    if task == "regression":
        return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    return np.array(column.to_pylist(), dtype=object)


def _check_float32_range(column: pa.Array, name: str, role: str, first_row: int) -> None:
    """Refuse infinities and values float32 cannot hold; NaN is a missing value."""
    if pa.types.is_integer(column.type) or pa.types.is_boolean(column.type):
        return  # int64's largest magnitude is far inside float32's range
    values = pc.cast(column, pa.float64())
    # One pass in Arrow, no copy; min_max skips nulls and NaN.
    low, high = (v.as_py() for v in pc.min_max(values).values())
    if not any(v is not None and abs(v) > FLOAT32_MAX for v in (low, high)):
        return
    array = values.to_numpy(zero_copy_only=False)
    at = int(np.argmax(np.abs(array) > FLOAT32_MAX))
    value = array[at]
    raise ShardingError(
        f"{role} column {name!r} holds {value:g} at row {first_row + at + 1}, "
        f"beyond float32's range (±{FLOAT32_MAX:.4g}) that training uses; "
        f"fix or remove such values and upload the dataset again"
    )


def _batches(path: str, names: list[str]) -> Iterator[pa.RecordBatch]:
    # pre_buffer=True (pyarrow's default) reads every column chunk of the file up
    # front: the whole dataset in memory. Without it, one row group at a time.
    yield from pq.ParquetFile(path, pre_buffer=False).iter_batches(
        batch_size=BATCH_ROWS, columns=names
    )


def build_shards(
    store: BlobStore,
    *,
    job_id: str,
    data_key: str,
    spec: JobSpec,
    columns: list[dict[str, Any]],
    task: str,
    max_parameters: int | None = None,
) -> ShardPlan:
    """Raises ShardingError (whose `code` is the job's error code) for data or a model
    that cannot be trained; nothing is written before the checks pass."""
    all_dtypes = {c["name"]: c["dtype"] for c in columns}
    feature_names = spec.features or [n for n in all_dtypes if n != spec.target]
    dtypes = {n: all_dtypes[n] for n in feature_names}
    path = str(store.path(data_key))
    n_rows = pq.ParquetFile(path).metadata.num_rows
    try:
        assignment = assign_rows(
            n_rows,
            seed=spec.training.seed,
            holdout_fraction=spec.validation.holdout_fraction,
            validation_fraction=spec.validation.validation_fraction,
            shards=spec.distribution.shards,
        )
    except ValueError as exc:
        raise ShardingError(str(exc)) from exc

    fitter = PreprocessingFitter(
        columns=list(dtypes.items()),
        target=(spec.target, all_dtypes[spec.target]),
        task=task,
        standardize=spec.preprocessing.standardize,
        impute=spec.preprocessing.impute,
        seed=spec.training.seed,
    )
    names = [*feature_names, spec.target]
    offset = 0
    numeric = [n for n, d in dtypes.items() if d != "string"]
    for batch in _batches(path, names):
        rows = assignment[offset : offset + batch.num_rows]
        # Every row, holdout and validation included: all of them are written as float32.
        for name in numeric:
            _check_float32_range(batch.column(name), name, "feature", offset)
        # Rows without a target teach nothing and cannot be scored: they are dropped.
        valid = batch.column(spec.target).is_valid().to_numpy(zero_copy_only=False)
        if task == "regression":
            _check_float32_range(batch.column(spec.target), spec.target, "target", offset)
            valid &= ~np.isnan(_target_values(batch, spec.target, task))
        assignment[offset : offset + batch.num_rows] = np.where(valid, rows, np.int16(-3))
        train = np.nonzero(valid & (rows >= 0))[0]
        if len(train):
            picked = batch.take(pa.array(train))
            fitter.update(
                feature_columns(picked, dtypes), _target_values(picked, spec.target, task)
            )
        offset += batch.num_rows
    preprocessor = fitter.finish()
    if task == "classification" and len(preprocessor.target.classes or []) < 2:
        raise ShardingError(
            f"target {spec.target!r} has fewer than two classes in the training rows"
        )

    n_outputs = len(preprocessor.target.classes or []) if task == "classification" else 1
    if spec.deploy_if is not None and spec.deploy_if.metric == "roc_auc" and n_outputs != 2:
        raise ShardingError(
            f"deploy_if.metric roc_auc scores binary tasks; {spec.target!r} has {n_outputs} classes"
        )
    network = NetworkConfig(
        type=spec.model.type,
        n_features=preprocessor.n_features,
        n_outputs=n_outputs,
        hidden_layers=list(spec.model.hidden_layers) if spec.model.type == "mlp" else [],
        activation=spec.model.activation,
        dropout=spec.model.dropout,
    )
    too_big = over_limit(network, max_parameters)
    if too_big is not None:
        raise ShardingError(too_big, code="quota_exceeded")
    groups = [HOLDOUT, VALIDATION, *range(spec.distribution.shards)]
    part_keys = {
        HOLDOUT: keys.job_holdout(job_id),
        VALIDATION: keys.job_validation(job_id),
        **{s: keys.job_shard(job_id, s) for s in range(spec.distribution.shards)},
    }
    counts = {g: int(np.count_nonzero(assignment == g)) for g in groups}
    empty = [s for s in range(spec.distribution.shards) if counts[s] == 0]
    if empty:
        raise ShardingError(f"shard(s) {empty} have no rows with a target value")
    _write_parts(
        store, path, names, assignment, preprocessor, dict(part_keys), counts, dtypes, spec, task
    )
    return ShardPlan(
        preprocessor=preprocessor,
        network=network,
        shard_keys=[part_keys[s] for s in range(spec.distribution.shards)],
        shard_rows=[counts[s] for s in range(spec.distribution.shards)],
        validation_key=part_keys[VALIDATION],
        validation_rows=counts[VALIDATION],
        holdout_key=part_keys[HOLDOUT],
        holdout_rows=counts[HOLDOUT],
        dropped_rows=int(np.count_nonzero(assignment == -3)),
    )


def _write_parts(
    store: BlobStore,
    path: str,
    names: list[str],
    assignment: np.ndarray,
    preprocessor: Preprocessor,
    keys: dict[int, str],
    counts: dict[int, int],
    dtypes: dict[str, str],
    spec: JobSpec,
    task: str,
) -> None:
    width = preprocessor.n_features + 1  # the last column is the encoded target
    # Plain appends, not a memory map: written pages of a map count in the worker's
    # RSS until the kernel flushes them, so a big dataset would look like a leak.
    outputs: dict[int, tuple[BinaryIO, Path, Path]] = {}
    try:
        with ExitStack() as stack:
            for group, key in keys.items():
                target = store.path(key)
                target.parent.mkdir(parents=True, exist_ok=True)
                # A name of its own: a re-sent prepare running alongside never shares a file;
                # named after its writer, a killed prepare's files go at the next start-up.
                fd, name = tempfile.mkstemp(dir=target.parent, prefix=temp_prefix(target.name))
                handle = stack.enter_context(os.fdopen(fd, "wb"))
                header = {"descr": "<f4", "fortran_order": False, "shape": (counts[group], width)}
                np.lib.format.write_array_header_1_0(handle, header)
                outputs[group] = (handle, Path(name), target)
            written = dict.fromkeys(keys, 0)
            offset = 0
            for batch in _batches(path, names):
                rows = assignment[offset : offset + batch.num_rows]
                offset += batch.num_rows
                features = preprocessor.transform(feature_columns(batch, dtypes))
                targets = preprocessor.encode_target(_target_values(batch, spec.target, task))
                block = np.empty((batch.num_rows, width), dtype="<f4")
                block[:, :-1] = features
                block[:, -1] = targets
                for group, (sink, _tmp, _target) in outputs.items():
                    picked = block[rows == group]
                    sink.write(picked.tobytes())
                    written[group] += len(picked)
        for group in outputs:
            if written[group] != counts[group]:
                raise ShardingError(f"part {group} got {written[group]} rows, not {counts[group]}")
        for _handle, tmp, target in outputs.values():
            tmp.replace(target)
    finally:
        # Whatever was not renamed into place is a leftover of a failed attempt.
        for _handle, tmp, _target in outputs.values():
            tmp.unlink(missing_ok=True)
