"""Split a dataset into holdout, validation and N training shards, fit preprocessing on
the training rows only, and write each part once (`part_files`): float32 features for
a network, uint8 bins for trees.

Two streaming passes over the Parquet file: the first fits the preprocessing (and, for
trees, samples the rows the bin edges are placed on), the second appends each row to
its part's files. Memory is one record batch plus the split's two bytes per row.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from app.datasets.columns import feature_columns
from app.jobs.capacity import over_limit
from app.jobs.part_files import PartLayout, write_parts
from app.jobs.plan import ShardPlan
from app.jobs.spec import GradientBoostedTreesSpec, JobSpec
from app.jobs.target_codes import class_counts, class_indices
from app.jobs.tree_prep import MAX_HISTOGRAM_BYTES, EdgeSample, histogram_bytes
from app.storage import BlobStore, keys
from app.training.networks import NetworkConfig
from app.training.preprocessing import DENSE, ORDINAL, PreprocessingFitter, Preprocessor
from app.training.split import HOLDOUT, VALIDATION, assign_rows
from app.training.trees.binning import bin_matrix
from app.training.trees.objectives import objective_for

BATCH_ROWS = 65_536
# Parts are float32: a value past this would be written as infinity, and training on
# it diverges instead of saying which column holds it.
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class Reused:
    """What a warm start takes from its model instead of fitting it: the preprocessing,
    and for trees the bin edges and the base score its trees were grown from."""

    preprocessor: Preprocessor
    edges: list[np.ndarray] | None = None
    base_score: list[float] | None = None


class ShardingError(ValueError):
    def __init__(self, message: str, code: str = "invalid_data") -> None:
        super().__init__(message)
        self.code = code


def _target_values(batch: pa.RecordBatch, name: str, task: str) -> np.ndarray:
    column = batch.column(name)
    if task == "regression":
        return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    return np.array(column.to_pylist(), dtype=object)


def _encoded_target(
    preprocessor: Preprocessor, batch: pa.RecordBatch, name: str, task: str
) -> np.ndarray:
    if task == "classification":
        assert preprocessor.target.classes is not None
        found = class_indices(batch.column(name), preprocessor.target.classes)
        if found is not None:
            return found
    return preprocessor.encode_target(_target_values(batch, name, task))


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


def _check_known_classes(
    column: pa.Array | pa.ChunkedArray, preprocessor: Preprocessor, target: str
) -> None:
    """A warm start predicts the classes its model knows: a new one cannot be learnt."""
    known = set(preprocessor.target.classes or [])
    unseen = [value for value in class_counts(column) if value not in known]
    if unseen:
        raise ShardingError(
            f"init_from: target {target!r} holds class {unseen[0]!r}, which the model the "
            f"job starts from does not predict (it knows {sorted(map(str, known))}); "
            "train this data from scratch",
            code="invalid_spec",
        )


def _unproven_range(path: str, names: list[str]) -> list[str]:
    """The columns whose values the file's own statistics do not show inside float32's
    range. Ingest records each row group's min and max (and refuses values beyond
    float32), so this is usually none, and no value is read to check it; a file
    written otherwise, or a column without statistics, is checked value by value."""
    metadata = pq.ParquetFile(path).metadata
    index = {metadata.schema.column(i).name: i for i in range(metadata.num_columns)}
    unproven = []
    for name in names:
        for group in range(metadata.num_row_groups):
            stats = metadata.row_group(group).column(index[name]).statistics
            if stats is None or not stats.has_min_max:
                unproven.append(name)
                break
            if not all(abs(float(v)) <= FLOAT32_MAX for v in (stats.min, stats.max)):
                unproven.append(name)
                break
    return unproven


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
    reused: Reused | None = None,
) -> ShardPlan:
    """Raises ShardingError (whose `code` is the job's error code) for data or a model
    that cannot be trained; nothing is written before the checks pass. A warm start
    passes what it reuses of its model, which is not fitted again."""
    preprocessor = reused.preprocessor if reused is not None else None
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
            cv=spec.validation.cv,
        )
    except ValueError as exc:
        raise ShardingError(str(exc)) from exc

    trees = spec.model if isinstance(spec.model, GradientBoostedTreesSpec) else None
    fitter = PreprocessingFitter(
        columns=list(dtypes.items()),
        target=(spec.target, all_dtypes[spec.target]),
        task=task,
        standardize=spec.preprocessing.standardize,
        impute=spec.preprocessing.impute,
        seed=spec.training.seed,
        encoding=DENSE if trees is None else ORDINAL,
    )
    sample = (
        None
        if trees is None or reused is not None
        else EdgeSample(n_rows, len(dtypes), spec.training.seed)
    )
    names = [*feature_names, spec.target]
    offset = 0
    numeric = _unproven_range(path, [n for n, d in dtypes.items() if d != "string"])
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
        if len(train) and preprocessor is not None:
            if task == "classification":
                picked = batch if len(train) == batch.num_rows else batch.take(pa.array(train))
                _check_known_classes(picked.column(spec.target), preprocessor, spec.target)
        elif len(train):
            picked = batch if len(train) == batch.num_rows else batch.take(pa.array(train))
            if task == "classification":
                counts = class_counts(picked.column(spec.target))
                fitter.update(feature_columns(picked, dtypes), None, class_counts=counts)
            else:
                fitter.update(
                    feature_columns(picked, dtypes), _target_values(picked, spec.target, task)
                )
            if sample is not None:
                sampled = sample.rows_of(offset, train)
                sample.add(feature_columns(batch.take(pa.array(sampled)), dtypes))
        offset += batch.num_rows
    if preprocessor is None:
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
    # For trees, only the model's shape: how many features it reads, how many outputs.
    model = spec.model
    network = (
        NetworkConfig(model.type, preprocessor.n_features, n_outputs)
        if isinstance(model, GradientBoostedTreesSpec)
        else NetworkConfig(
            type=model.type,
            n_features=preprocessor.n_features,
            n_outputs=n_outputs,
            hidden_layers=list(model.hidden_layers) if model.type == "mlp" else [],
            activation=model.activation,
            dropout=model.dropout,
        )
    )
    edges: list[np.ndarray] | None = None
    learner: dict[str, Any] = {}
    if trees is None:
        too_big = over_limit(network, max_parameters)
        if too_big is not None:
            raise ShardingError(too_big, code="quota_exceeded")
        part_keys = _dense_keys(job_id, spec.distribution.shards)
    else:
        if reused is not None:
            assert reused.edges is not None and reused.base_score is not None
            edges = list(reused.edges)
        else:
            assert sample is not None
            edges = sample.edges(preprocessor, trees.max_bins)
        objective = objective_for(task, n_outputs)
        size = histogram_bytes(trees, edges, objective.outputs)
        if size > MAX_HISTOGRAM_BYTES:
            raise ShardingError(
                f"model.max_depth: {trees.max_depth} levels of {len(edges)} features at "
                f"{trees.max_bins} bins need {size / 2**20:,.0f} MiB of histograms per "
                f"shard in a round, above {MAX_HISTOGRAM_BYTES / 2**20:,.0f} MiB; lower "
                "max_depth or max_bins, or train on fewer features",
                code="quota_exceeded",
            )
        learner = {
            "base_score": list(reused.base_score)
            if reused is not None and reused.base_score is not None
            else objective.constant_score(*fitter.target_summary()).tolist()
        }
        part_keys = _binned_keys(job_id, spec.distribution.shards)
    groups = [HOLDOUT, VALIDATION, *range(spec.distribution.shards)]
    counts = {g: int(np.count_nonzero(assignment == g)) for g in groups}
    empty = [s for s in range(spec.distribution.shards) if counts[s] == 0]
    if empty:
        raise ShardingError(f"shard(s) {empty} have no rows with a target value")
    _write_parts(
        store, path, names, assignment, preprocessor, part_keys, counts, dtypes, spec, task, edges
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
        learner=learner,
        edges=edges,
    )


def _dense_keys(job_id: str, shards: int) -> dict[int, str]:
    return {
        HOLDOUT: keys.job_holdout(job_id),
        VALIDATION: keys.job_validation(job_id),
        **{s: keys.job_shard(job_id, s) for s in range(shards)},
    }


def _binned_keys(job_id: str, shards: int) -> dict[int, str]:
    return {
        HOLDOUT: keys.job_binned_holdout(job_id),
        VALIDATION: keys.job_binned_validation(job_id),
        **{s: keys.job_binned_shard(job_id, s) for s in range(shards)},
    }


def _write_parts(
    store: BlobStore,
    path: str,
    names: list[str],
    assignment: np.ndarray,
    preprocessor: Preprocessor,
    part_keys: dict[int, str],
    counts: dict[int, int],
    dtypes: dict[str, str],
    spec: JobSpec,
    task: str,
    edges: list[np.ndarray] | None,
) -> None:
    """Every row into its part: float32 features and target in one file (networks),
    or bins, target and the row's index in the dataset (trees, `edges` given)."""
    width = preprocessor.n_features
    layouts = {
        group: PartLayout.dense(key, width + 1) if edges is None else PartLayout.binned(key, width)
        for group, key in part_keys.items()
    }
    try:
        with write_parts(store, layouts, counts) as parts:
            offset = 0
            for batch in _batches(path, names):
                rows = assignment[offset : offset + batch.num_rows]
                targets = _encoded_target(preprocessor, batch, spec.target, task)
                if edges is None:
                    block = np.empty((batch.num_rows, width + 1), dtype="<f4")
                    preprocessor.transform(feature_columns(batch, dtypes), out=block[:, :-1])
                    block[:, -1] = targets
                    for group in part_keys:
                        parts.append(group, data=block[rows == group])
                else:
                    bins = bin_matrix(preprocessor.transform(feature_columns(batch, dtypes)), edges)
                    index = np.arange(offset, offset + batch.num_rows, dtype=np.int64)
                    for group in part_keys:
                        mine = rows == group
                        parts.append(group, bins=bins[mine], target=targets[mine], rows=index[mine])
                offset += batch.num_rows
    except ValueError as exc:
        raise ShardingError(str(exc)) from exc
