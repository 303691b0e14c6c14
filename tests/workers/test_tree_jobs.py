"""Gradient-boosted trees through the API and the real stages: the spec's refusals,
training on numeric, categorical and missing values, serving raw records over HTTP
the way the binned holdout was scored, feature importance on the column names, ONNX,
and the same trees at 1, 4 and 8 shards with row and column sampling."""

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from fastapi.testclient import TestClient
from sample_data import iris_table, table_to_csv
from sqlalchemy.orm import Session, sessionmaker

from app.db import session_scope
from app.jobs.checkpoints import load_checkpoint
from app.jobs.learners import policy_for
from app.jobs.part_files import load_part
from app.jobs.plan import ShardPlan
from app.jobs.repository import JobRepository
from app.jobs.spec import JobSpec
from app.storage import BlobStore
from app.tenancy.scope import SYSTEM
from app.training.trees.policy import ensemble_of

TREES: dict[str, Any] = {"type": "gradient_boosted_trees", "n_trees": 12, "max_depth": 3}


def mixed_csv(rows: int = 1500, seed: int = 0) -> bytes:
    """A binary label that a color, a size with missing values and their interaction
    decide; `noise` carries nothing."""
    rng = np.random.default_rng(seed)
    color = rng.choice(["red", "green", "blue"], size=rows)
    size = rng.normal(size=rows)
    noise = rng.normal(size=rows)
    logit = 2.5 * (color == "red") - 1.5 * (color == "blue") + 2 * size * (color != "green")
    label = np.where(logit + rng.logistic(scale=0.3, size=rows) > 0, "yes", "no")
    missing = rng.random(rows) < 0.15
    table = pa.table(
        {
            "color": color,
            "size": pa.array(np.where(missing, np.nan, size)).fill_null(None),
            "noise": noise,
            "label": label,
        }
    )
    table = table.set_column(1, "size", pa.array(size, mask=missing))
    return table_to_csv(table)


def histogram_boosting_accuracy(
    table: pa.Table, plan: ShardPlan, store: BlobStore, holdout_rows: np.ndarray
) -> float:
    """scikit-learn's HistGradientBoosting, fitted on the job's training rows with the
    same trees, scored on its holdout: the level to be at."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    train_rows = np.concatenate([load_part(store, key).rows for key in plan.shard_keys])  # type: ignore[misc]
    colors = sorted(set(table["color"].to_pylist()))
    x = np.column_stack(
        [
            [colors.index(v) for v in table["color"].to_pylist()],
            [np.nan if v is None else v for v in table["size"].to_pylist()],
            table["noise"].to_numpy(),
        ]
    )
    y = np.array(table["label"].to_pylist())
    model = HistGradientBoostingClassifier(
        max_iter=30, max_depth=4, learning_rate=0.1, categorical_features=[0], random_state=0
    ).fit(x[train_rows], y[train_rows])
    return float(model.score(x[holdout_rows], y[holdout_rows]))


@pytest.fixture
def trees_job(train_job: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    def make(data: bytes, **spec: Any) -> dict[str, Any]:
        job = train_job("data.csv", data, **{"model": TREES, **spec})
        assert job["status"] == "succeeded", job
        return job

    return make


def read_plan(sessions: sessionmaker[Session], job_id: str) -> tuple[ShardPlan, JobSpec, str]:
    with session_scope(sessions) as session:
        job = JobRepository(session, SYSTEM).get(job_id)
        assert job is not None and job.plan is not None and job.task is not None
        return ShardPlan.from_dict(job.plan), JobSpec.stored(job.spec), job.task


@pytest.mark.parametrize(
    ("section", "given", "field", "hint"),
    [
        ("training", {"optimizer": "sgd"}, "training.optimizer", "leave it out"),
        ("training", {"rounds": 50}, "training.rounds", "model.n_trees"),
        ("training", {"learning_rate": 0.3}, "training.learning_rate", "model.learning_rate"),
        ("preprocessing", {"standardize": False}, "preprocessing.standardize", "leave it out"),
        ("distribution", {"aggregation": "median"}, "distribution.aggregation", "leave it out"),
        ("distribution", {"device": "cuda"}, "distribution.device", "CPU"),
    ],
)
def test_settings_trees_do_not_use_are_refused_by_name(
    client: TestClient,
    ready_dataset: Callable[[str, bytes], str],
    section: str,
    given: dict[str, Any],
    field: str,
    hint: str,
) -> None:
    dataset_id = ready_dataset("data.csv", mixed_csv(100))
    body = {"dataset_id": dataset_id, "target": "label", "model": TREES, section: given}
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["param"] == field
    assert hint in error["message"]


def test_tree_settings_on_a_network_are_refused(
    client: TestClient, ready_dataset: Callable[[str, bytes], str]
) -> None:
    dataset_id = ready_dataset("data.csv", mixed_csv(100))
    body = {"dataset_id": dataset_id, "target": "label", "model": {"type": "mlp", "n_trees": 5}}
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 422, response.text
    assert "n_trees" in response.text


def test_a_trees_job_shows_only_the_settings_it_uses(
    client: TestClient, ready_dataset: Callable[[str, bytes], str]
) -> None:
    dataset_id = ready_dataset("data.csv", mixed_csv(100))
    body = {"dataset_id": dataset_id, "target": "label", "model": {**TREES, "n_trees": 7}}
    job = client.post("/v1/jobs", json=body).json()
    assert job["progress"]["rounds"] == 7 * 3
    spec = job["spec"]
    assert spec["model"] == {
        "type": "gradient_boosted_trees",
        "n_trees": 7,
        "max_depth": 3,
        "learning_rate": 0.1,
        "max_bins": 255,
        "min_child_weight": 1.0,
        "l2": 1.0,
        "min_split_gain": 0.0,
        "subsample": 1.0,
        "colsample": 1.0,
    }
    assert spec["training"] == {"seed": 0, "early_stopping": {"patience": 3, "min_delta": 1e-4}}
    assert "optimizer" not in str(spec) and "standardize" not in str(spec)


def test_trees_learn_categories_and_missing_values_and_serve_raw_records(
    client: TestClient,
    trees_job: Callable[..., dict[str, Any]],
    sessions: sessionmaker[Session],
    store: BlobStore,
) -> None:
    data = mixed_csv()
    job = trees_job(data, target="label", model={**TREES, "n_trees": 30, "max_depth": 4})
    plan, _spec, _task = read_plan(sessions, job["id"])
    holdout = load_part(store, plan.holdout_key)
    assert holdout.rows is not None
    table = pacsv.read_csv(io.BytesIO(data))
    reference = histogram_boosting_accuracy(table, plan, store, holdout.rows)
    assert job["metrics"]["accuracy"] >= reference - 0.02, (job["metrics"], reference)
    model = client.get(f"/v1/models/{job['model_id']}").json()
    assert model["type"] == "gradient_boosted_trees"
    importance = model["feature_importance"]
    assert {row["feature"] for row in importance} == {"color", "size", "noise"}
    assert importance[0]["feature"] in ("color", "size") and importance[-1]["feature"] == "noise"
    assert importance[0]["gain"] > 10 * importance[-1]["gain"] and importance[0]["split"] > 0

    # The holdout rows as the user sent them, predicted over HTTP, give what scoring
    # their bins gave: the raw thresholds and the bins route every row alike.
    table = table.take(pa.array(holdout.rows))
    records = [{k: v for k, v in row.items() if k != "label"} for row in table.to_pylist()]
    assert any(r["size"] is None for r in records)
    served = client.post(f"/v1/models/{job['model_id']}/predict", json={"inputs": records})
    assert served.status_code == 200, served.text
    yes = np.array([p["yes"] for p in served.json()["probabilities"]])
    with session_scope(sessions) as session:
        kept = JobRepository(session, SYSTEM).get(job["id"])
        assert kept is not None and kept.best_round is not None
        state = load_checkpoint(store, job["id"], kept.best_round)
    assert state is not None
    raw = ensemble_of(state).predict_binned(np.asarray(holdout.features))
    np.testing.assert_allclose(yes, 1 / (1 + np.exp(-raw[:, 0])), rtol=0, atol=1e-12)

    unseen = client.post(
        f"/v1/models/{job['model_id']}/predict",
        json={"inputs": [{"color": "purple", "size": None, "noise": 0.0}]},
    )
    assert unseen.status_code == 200, unseen.text
    assert sum(unseen.json()["probabilities"][0].values()) == pytest.approx(1.0)

    onnx = client.get(f"/v1/models/{job['model_id']}/artifact", params={"format": "onnx"})
    assert onnx.status_code == 200, onnx.text
    session_ = ort.InferenceSession(onnx.content)
    categories = sorted({"red", "green", "blue"})
    codes = np.array([[categories.index(r["color"])] for r in records], dtype=np.int64)
    numeric = np.array(
        [[np.nan if r["size"] is None else r["size"], r["noise"]] for r in records],
        dtype=np.float32,
    )
    names = [i.name for i in session_.get_inputs()]
    assert names == ["numeric", "categorical"]
    outputs = dict(
        zip(
            [o.name for o in session_.get_outputs()],
            session_.run(None, {"numeric": numeric, "categorical": codes}),
            strict=True,
        )
    )
    np.testing.assert_allclose(outputs["output"][:, 1], yes, atol=1e-5)


def test_regression_and_multiclass_trees(
    client: TestClient, trees_job: Callable[..., dict[str, Any]]
) -> None:
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    table = pa.table({**{f"x{j}": x[:, j] for j in range(x.shape[1])}, "y": y})
    job = trees_job(
        table_to_csv(table), target="y", task="regression", model={**TREES, "n_trees": 40}
    )
    assert job["metrics"]["r2"] > 0.3, job["metrics"]
    prediction = client.post(
        f"/v1/models/{job['model_id']}/predict",
        json={"inputs": [{f"x{j}": float(x[0, j]) for j in range(x.shape[1])}]},
    ).json()["predictions"][0]
    # In the target's own units: near the target's range, not a standardized score.
    assert y.min() <= prediction <= y.max()

    iris = trees_job(table_to_csv(iris_table()), target="species", model=TREES)
    assert iris["metrics"]["accuracy"] >= 0.9, iris["metrics"]


def test_the_same_trees_at_1_4_and_8_shards_with_row_and_column_sampling(
    trees_job: Callable[..., dict[str, Any]],
    sessions: sessionmaker[Session],
    store: BlobStore,
) -> None:
    data = mixed_csv(900, seed=4)
    model = {**TREES, "subsample": 0.7, "colsample": 0.67, "n_trees": 8}
    ensembles = []
    for shards in (1, 4, 8):
        job = trees_job(
            data,
            target="label",
            model=model,
            training={"seed": 11, "early_stopping": None},
            distribution={"shards": shards},
        )
        plan, spec, task = read_plan(sessions, job["id"])
        assert policy_for(spec, task, plan).rounds == 8 * 3
        state = load_checkpoint(store, job["id"], 8 * 3)
        assert state is not None
        ensembles.append(ensemble_of(state))
    one = ensembles[0]
    assert one.n_trees == 8 and (one.feature >= 0).sum() > 8
    for other in ensembles[1:]:
        for name in ("feature", "threshold_bin", "threshold", "default_left", "tree_output"):
            np.testing.assert_array_equal(getattr(other, name), getattr(one, name))
        np.testing.assert_allclose(other.value, one.value, rtol=0, atol=1e-6)
