"""The champion gate (`deploy_if: {beats: "champion", metric, by}`): the candidate and
the name's champion scored on the same rows, the candidate's holdout, each model through
its own preprocessing from the raw columns, as predict would see them.

The comparison runs with no transaction open, against the champion read before it. The
model is recorded under the name's row lock only if that champion is still the one:
otherwise `ChampionMoved`, and finalize compares again with the new champion. So two
candidates finishing together cannot both become champion, and the champion is always
a model that beat the one before it.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy.orm import Session

from app.datasets.columns import feature_columns
from app.jobs.events import record_event
from app.jobs.spec import DeployGate, JobSpec
from app.model_names.aliases import CHAMPION, move_alias
from app.model_names.repository import ModelAliasRepository
from app.model_names.resolution import AliasGenerations
from app.registry.predictor import Predictor
from app.registry.repository import ModelRepository
from app.tables import RegisteredModel
from app.tenancy.scope import Scope
from app.training.metrics import HIGHER_IS_BETTER, Scores, score_classification, score_regression
from app.training.split import HOLDOUT, assign_rows

BATCH_ROWS = 65_536


class ChampionMoved(Exception):
    """The champion changed between the comparison and the record: compare again."""


@dataclass(frozen=True)
class ChampionRef:
    model_id: str
    version: int
    artifact_key: str
    task: str
    features: list[dict[str, str]]


def read_champion(session: Session, tenant_id: str, name: str) -> ChampionRef | None:
    scope = Scope.tenant(tenant_id)
    alias = ModelAliasRepository(session, scope).find(name, CHAMPION)
    if alias is None:
        return None
    model = ModelRepository(session, scope).get(alias.model_id)
    if model is None:
        return None
    return ChampionRef(model.id, alias.version, model.artifact_key, model.task, model.features)


def holdout_table(data_path: Path, spec: JobSpec, columns: list[str], task: str) -> pa.Table:
    """The job's holdout rows, raw, in dataset order: the rows prepare wrote to the
    holdout part (the same seeded assignment, less the rows without a target)."""
    parquet = pq.ParquetFile(str(data_path), pre_buffer=False)
    assignment = assign_rows(
        parquet.metadata.num_rows,
        seed=spec.training.seed,
        holdout_fraction=spec.validation.holdout_fraction,
        validation_fraction=spec.validation.validation_fraction,
        shards=spec.distribution.shards,
    )
    kept: list[pa.RecordBatch] = []
    offset = 0
    for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=columns):
        mine = assignment[offset : offset + batch.num_rows] == HOLDOUT
        target = batch.column(spec.target)
        mine &= target.is_valid().to_numpy(zero_copy_only=False)
        if task == "regression":
            values = pc.cast(target, pa.float64()).to_numpy(zero_copy_only=False)
            mine &= ~np.isnan(values)
        if mine.any():
            kept.append(batch.filter(pa.array(mine)))
        offset += batch.num_rows
    schema = parquet.schema_arrow
    return pa.Table.from_batches(kept, pa.schema([schema.field(c) for c in columns]))


def score_on(predictor: Predictor, table: pa.Table, target: str, labels: list[Any]) -> Scores:
    """`predictor`'s scores on `table`, classes scored in the label space `labels` (the
    candidate's classes): a class the model never saw has probability 0 from it."""
    dtypes = {f["name"]: f["dtype"] for f in predictor.preprocessor.feature_schema}
    outputs = predictor.outputs(feature_columns(table, dtypes))
    truth = table.column(target)
    if predictor.task == "regression":
        return score_regression(
            pc.cast(truth, pa.float64()).to_numpy(zero_copy_only=False), outputs
        )
    index = {value: i for i, value in enumerate(labels)}
    proba = np.zeros((table.num_rows, len(labels)), dtype=np.float64)
    for j, name in enumerate(predictor.preprocessor.target.classes or []):
        if name in index:
            proba[:, index[name]] = outputs[:, j]
    codes = np.array([index[v] for v in truth.to_pylist()], dtype=np.int64)
    return score_classification(codes, proba)


def unreadable(champion: ChampionRef, dtypes: dict[str, str], task: str) -> str | None:
    """Why the champion cannot score this dataset's rows, or None."""
    if champion.task != task:
        return f"it is a {champion.task} model and this job's task is {task}"
    for feature in champion.features:
        name, wanted = feature["name"], feature["dtype"]
        if name not in dtypes:
            return f"it reads column {name!r}, which this job's dataset lacks"
        if (wanted == "string") != (dtypes[name] == "string"):
            return f"its column {name!r} is {wanted}, and {dtypes[name]} in this dataset"
    return None


def improvement(gate: DeployGate, candidate: float, champion: float) -> float:
    """How much better the candidate is, in the metric's own direction."""
    if HIGHER_IS_BETTER[gate.metric]:
        return candidate - champion
    return champion - candidate


def _result(gate: DeployGate, champion: ChampionRef | None, rows: int) -> dict[str, Any]:
    return {
        "metric": gate.metric,
        "by": gate.margin,
        "rows": rows,
        "candidate": None,
        "champion": None,
        "champion_version": champion.version if champion is not None else None,
        "champion_model_id": champion.model_id if champion is not None else None,
        "passed": False,
    }


def not_compared(
    gate: DeployGate, champion: ChampionRef, why: str, rows: int = 0
) -> dict[str, Any]:
    """Never promoted: a champion is replaced only by a model that beat it on the same rows."""
    return {
        **_result(gate, champion, rows),
        "reason": f"not compared with champion version {champion.version}: {why}",
    }


def compare(
    gate: DeployGate,
    candidate: Predictor,
    champion: ChampionRef,
    champion_path: Path,
    table: pa.Table,
    target: str,
    dtypes: dict[str, str],
) -> dict[str, Any]:
    """The head-to-head, stored on the model and in the job's events."""
    metric = gate.metric
    labels = list(candidate.preprocessor.target.classes or [])
    if candidate.task == "classification":
        # Rows of a class the candidate never trained on cannot be scored by it.
        known = pa.array(labels, table.schema.field(target).type)
        table = table.filter(pc.is_in(table.column(target), value_set=known))
    why = unreadable(champion, dtypes, candidate.task)
    if why is None and table.num_rows == 0:
        why = "the holdout has no rows both can score"
    if why is not None:
        return not_compared(gate, champion, why, table.num_rows)
    ours = score_on(candidate, table, target, labels)
    theirs = score_on(Predictor(champion_path), table, target, labels)
    mine, other = ours.values.get(metric), theirs.values.get(metric)
    result = {**_result(gate, champion, table.num_rows), "candidate": mine, "champion": other}
    if mine is None:
        why = ours.unavailable.get(metric, "not scored")
        return {**result, "reason": f"the candidate's {metric} could not be computed: {why}"}
    if other is None:
        why = theirs.unavailable.get(metric, "not scored")
        return {
            **result,
            "reason": f"champion version {champion.version}'s {metric} could not be "
            f"computed: {why}",
        }
    gain = improvement(gate, mine, other)
    passed = gain > 0 and gain >= gate.margin
    verdict = "beat" if passed else "did not beat"
    return {
        **result,
        "passed": passed,
        "reason": f"{metric} {mine:.4f} {verdict} champion version {champion.version}'s "
        f"{other:.4f} by at least {gate.margin:g} on {table.num_rows} holdout rows "
        f"(by {gain:+.4f})",
    }


def first_version(gate: DeployGate, value: float | None, rows: int) -> dict[str, Any]:
    """No champion yet: the candidate's own holdout score, judged by the absolute gate."""
    return {
        **_result(gate, None, rows),
        "candidate": value,
        "passed": True,
        "reason": "no champion yet"
        + (": judged by deploy_if.min/max alone" if gate.has_bound else ""),
    }


def settle_champion(
    session: Session,
    generations: AliasGenerations | None,
    job_id: str,
    compared_with: ChampionRef | None,
    model: RegisteredModel,
    comparison: dict[str, Any],
) -> None:
    """Under the name's lock (taken when the model was numbered): promote the model if
    it won, against the champion it was compared with and no other."""
    assert model.model_name is not None
    scope = Scope.tenant(model.tenant_id)
    current = ModelAliasRepository(session, scope).find(model.model_name, CHAMPION)
    expected = compared_with.model_id if compared_with is not None else None
    if (current.model_id if current is not None else None) != expected:
        raise ChampionMoved(
            f"the champion of {model.model_name!r} moved while job {job_id} compared against it"
        )
    if comparison["passed"]:
        move_alias(session, generations, current, model, CHAMPION, job_id, comparison["reason"])
        record_event(
            session,
            job_id,
            "model.champion",
            f"model {model.id} (version {model.version}) is the champion of "
            f"{model.model_name!r}: {comparison['reason']}",
            model_id=model.id,
            comparison=comparison,
        )
    else:
        record_event(
            session,
            job_id,
            "model.not_promoted",
            f"model {model.id} (version {model.version}) is not the champion of "
            f"{model.model_name!r}: {comparison['reason']}",
            level="warning",
            model_id=model.id,
            comparison=comparison,
        )
