"""Preprocessing fitted on the training split only and saved with the model.

Inputs are column arrays: numeric columns as float64 with NaN for missing,
categorical columns as object arrays of str with None for missing.

Two encodings. `dense` (networks): impute, standardize, one-hot. `ordinal` (trees):
one column per input column, numeric values as given and a category as its index in
the sorted categories, NaN for a missing value or an unseen category; a tree learns
where missing values go, and a split cares for order, not scale.
"""

from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

MEDIAN_SAMPLE_SIZE = 100_000
MAX_CATEGORIES = 1_000
DENSE, ORDINAL = "dense", "ordinal"


@dataclass
class NumericFeature:
    name: str
    dtype: str
    fill: float
    mean: float
    std: float


@dataclass
class CategoricalFeature:
    name: str
    dtype: str
    fill: str | None
    categories: list[str]


@dataclass
class TargetEncoding:
    name: str
    dtype: str
    task: str
    classes: list[Any] | None = None
    mean: float = 0.0
    std: float = 1.0


@dataclass
class Preprocessor:
    numeric: list[NumericFeature]
    categorical: list[CategoricalFeature]
    target: TargetEncoding
    columns: list[str] = field(default_factory=list)
    encoding: str = DENSE

    @property
    def n_features(self) -> int:
        if self.encoding == ORDINAL:
            return len(self.columns)
        return len(self.numeric) + sum(len(c.categories) for c in self.categorical)

    @property
    def feature_schema(self) -> list[dict[str, str]]:
        by_name = {f.name: f.dtype for f in self.numeric}
        by_name.update({f.name: f.dtype for f in self.categorical})
        return [{"name": name, "dtype": by_name[name]} for name in self.columns]

    def transform(
        self, columns: Mapping[str, np.ndarray], out: np.ndarray | None = None
    ) -> np.ndarray:
        """`out`, when given, is a float32 (rows, n_features) array to fill, such as the
        feature columns of a part's block, which saves a copy of every batch."""
        if self.encoding == ORDINAL:
            return self._ordinal(columns)
        n_rows = len(next(iter(columns.values()))) if columns else 0
        if out is None:
            out = np.empty((n_rows, self.n_features), dtype=np.float32)
        if self.categorical:
            out[:] = 0.0  # one-hot blocks set only their ones
        position = 0
        numeric = {f.name: f for f in self.numeric}
        categorical = {f.name: f for f in self.categorical}
        scaled = np.empty(n_rows, dtype=np.float64)
        for name in self.columns:
            if name in numeric:
                spec = numeric[name]
                values = np.asarray(columns[name], dtype=np.float64)
                # In float64 and then rounded once to float32, as (value - mean) / std.
                np.subtract(values, spec.mean, out=scaled)
                np.divide(scaled, spec.std, out=scaled)
                missing = np.isnan(values)
                if missing.any():
                    scaled[missing] = (spec.fill - spec.mean) / spec.std
                out[:, position] = scaled
                position += 1
            else:
                cat = categorical[name]
                index: dict[str | None, int] = {v: i for i, v in enumerate(cat.categories)}
                raw = columns[name]
                # An unseen category leaves its row all-zero in this block.
                codes = np.fromiter(
                    (index.get(cat.fill if v is None else v, -1) for v in raw),
                    dtype=np.int64,
                    count=len(raw),
                )
                seen = codes >= 0
                out[np.nonzero(seen)[0], position + codes[seen]] = 1.0
                position += len(cat.categories)
        return out

    def _ordinal(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """float64: tree thresholds are midpoints between training values, and a float32
        copy of a value could land on the other side of one."""
        n_rows = len(next(iter(columns.values()))) if columns else 0
        out = np.empty((n_rows, len(self.columns)), dtype=np.float64)
        categorical = {f.name: f for f in self.categorical}
        for position, name in enumerate(self.columns):
            if name not in categorical:
                out[:, position] = np.asarray(columns[name], dtype=np.float64)
                continue
            index = {v: float(i) for i, v in enumerate(categorical[name].categories)}
            out[:, position] = np.fromiter(
                (index.get(v, np.nan) if v is not None else np.nan for v in columns[name]),
                dtype=np.float64,
                count=n_rows,
            )
        return out

    def encode_target(self, values: np.ndarray) -> np.ndarray:
        """Class index (-1 when unseen in training) or the standardized value."""
        if self.target.task == "classification":
            assert self.target.classes is not None
            index = {value: i for i, value in enumerate(self.target.classes)}
            return np.array([index.get(v, -1) for v in values.tolist()], dtype=np.float32)
        return ((np.asarray(values, dtype=np.float64) - self.target.mean) / self.target.std).astype(
            np.float32
        )

    def decode_regression(self, outputs: np.ndarray) -> np.ndarray:
        return outputs * self.target.std + self.target.mean

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Preprocessor":
        return cls(
            numeric=[NumericFeature(**f) for f in data["numeric"]],
            categorical=[CategoricalFeature(**f) for f in data["categorical"]],
            target=TargetEncoding(**data["target"]),
            columns=list(data["columns"]),
            encoding=data.get("encoding", DENSE),
        )


@dataclass
class _NumericStats:
    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    sample: np.ndarray = field(default_factory=lambda: np.empty(0))
    sample_keys: np.ndarray = field(default_factory=lambda: np.empty(0))

    def update(self, values: np.ndarray, rng: np.random.Generator | None) -> None:
        """Add a batch; `rng` None keeps no sample (nothing will ask for a median)."""
        values = values[~np.isnan(values)]
        if len(values) == 0:
            return
        # Chan et al.'s parallel update: stable for batches of any size.
        batch_mean = float(values.mean())
        batch_m2 = float(((values - batch_mean) ** 2).sum())
        total = self.count + len(values)
        delta = batch_mean - self.mean
        self.mean += delta * len(values) / total
        self.m2 += batch_m2 + delta**2 * self.count * len(values) / total
        self.count = total
        if rng is None:
            return
        # Keeping the values with the smallest random keys is a uniform sample
        # without replacement, whatever the batch sizes.
        keys = np.concatenate([self.sample_keys, rng.random(len(values))])
        sample = np.concatenate([self.sample, values])
        if len(sample) > MEDIAN_SAMPLE_SIZE:
            keep = np.argpartition(keys, MEDIAN_SAMPLE_SIZE)[:MEDIAN_SAMPLE_SIZE]
            keys, sample = keys[keep], sample[keep]
        self.sample_keys, self.sample = keys, sample


class PreprocessingFitter:
    """Accumulates statistics over training-row batches, then builds a Preprocessor."""

    def __init__(
        self,
        *,
        columns: list[tuple[str, str]],
        target: tuple[str, str],
        task: str,
        standardize: bool,
        impute: str,
        seed: int = 0,
        encoding: str = DENSE,
    ) -> None:
        self._encoding = encoding
        self._columns = columns
        self._target_name, self._target_dtype = target
        self._task = task
        # Trees see raw values and a raw regression target: their l2 and min_child_weight
        # then mean what they mean in LightGBM and XGBoost.
        self._standardize = standardize and encoding == DENSE
        self._impute = impute
        # The sample of each column's values is for a median or most frequent fill; the
        # mean needs none, and trees fill nothing (missing is a bin of its own).
        self._rng = (
            np.random.default_rng(seed)
            if encoding == DENSE and impute in ("median", "most_frequent")
            else None
        )
        self._numeric = {n: _NumericStats() for n, d in columns if d != "string"}
        self._categories: dict[str, Counter[str]] = {
            n: Counter() for n, d in columns if d == "string"
        }
        self._target_numeric = _NumericStats()
        self._classes: Counter[Any] = Counter()

    def update(
        self,
        columns: Mapping[str, np.ndarray],
        target: np.ndarray | None,
        class_counts: Mapping[Any, int] | None = None,
    ) -> None:
        """A batch of training rows. For classification, `class_counts` may stand for
        `target`: how often each class occurs in the batch, counted by the caller."""
        for name, stats in self._numeric.items():
            stats.update(np.asarray(columns[name], dtype=np.float64), self._rng)
        for name, counter in self._categories.items():
            counter.update(v for v in columns[name] if v is not None)
        if self._task == "classification":
            if class_counts is not None:
                self._classes.update(class_counts)
            else:
                assert target is not None
                self._classes.update(target.tolist())
        else:
            assert target is not None
            self._target_numeric.update(np.asarray(target, dtype=np.float64), self._rng)

    def finish(self) -> Preprocessor:
        numeric, categorical = [], []
        for name, dtype in self._columns:
            if name in self._numeric:
                stats = self._numeric[name]
                std = float(np.sqrt(stats.m2 / stats.count)) if stats.count else 0.0
                numeric.append(
                    NumericFeature(
                        name=name,
                        dtype=dtype,
                        fill=self._numeric_fill(stats),
                        mean=stats.mean if self._standardize else 0.0,
                        # A constant column would divide by zero; it carries no signal anyway.
                        std=(std if std > 1e-12 else 1.0) if self._standardize else 1.0,
                    )
                )
            else:
                counts = self._categories[name]
                categories = sorted(v for v, _ in counts.most_common(MAX_CATEGORIES))
                # Ties go to the smallest value, so the fill never depends on batch order.
                fill = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0] if counts else None
                categorical.append(CategoricalFeature(name, dtype, fill, categories))
        if self._task == "classification":
            target = TargetEncoding(
                name=self._target_name,
                dtype=self._target_dtype,
                task="classification",
                classes=sorted(self._classes),
            )
        else:
            stats = self._target_numeric
            std = float(np.sqrt(stats.m2 / stats.count)) if stats.count else 1.0
            target = TargetEncoding(
                name=self._target_name,
                dtype=self._target_dtype,
                task="regression",
                mean=stats.mean if self._encoding == DENSE else 0.0,
                std=(std if std > 1e-12 else 1.0) if self._encoding == DENSE else 1.0,
            )
        return Preprocessor(
            numeric,
            categorical,
            target,
            columns=[n for n, _ in self._columns],
            encoding=self._encoding,
        )

    def target_summary(self) -> tuple[float, list[int]]:
        """The training target's mean (regression) and its class counts in the sorted
        class order (classification): what a constant model predicts."""
        counts = [self._classes[c] for c in sorted(self._classes)]
        return self._target_numeric.mean, counts

    def _numeric_fill(self, stats: _NumericStats) -> float:
        if stats.count == 0:
            return 0.0
        if self._impute == "median":
            return float(np.median(stats.sample))
        if self._impute == "most_frequent":
            values, counts = np.unique(stats.sample, return_counts=True)
            return float(values[np.argmax(counts)])
        return stats.mean
