"""The champion gate: `deploy_if: {beats: "champion"}` scores the candidate and the
name's champion on the candidate's holdout rows, each through its own preprocessing,
promotes only a winner by the margin, records the comparison, and cannot crown two
candidates that finish together."""

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from inprocess import run_job
from sample_data import breast_cancer_table, table_to_csv
from sqlalchemy.orm import Session, sessionmaker

from app.db import session_scope
from app.jobs.stages import finalize
from app.jobs.stages.champion import ChampionMoved
from app.model_names.resolution import AliasGenerations
from app.paramstore import ParamStore
from app.storage import BlobStore
from app.training.split import HOLDOUT, assign_rows

TABLE = breast_cancer_table()
FULL = table_to_csv(TABLE)
GATE = {"beats": "champion", "metric": "accuracy", "by": 0.005}
STRONG = {"rounds": 6, "learning_rate": 0.1}
# One round at a learning rate this small leaves the model near its initial guess.
WEAK = {"rounds": 1, "learning_rate": 1e-5, "local_epochs": 1}


def _spec(training: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "target": "diagnosis",
        "model_name": "cancer",
        "distribution": {"shards": 2},
        "training": {"seed": 1, **training},
        "deploy_if": GATE,
        **extra,
    }


def _model(client: TestClient, job: dict[str, Any]) -> dict[str, Any]:
    assert job["status"] == "succeeded", job
    return dict(client.get(f"/v1/models/{job['model_id']}").json())


def _champion(client: TestClient) -> int | None:
    aliases = client.get("/v1/model-names/cancer").json()["aliases"]
    return next((a["version"] for a in aliases if a["alias"] == "champion"), None)


def _events(client: TestClient, job: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    events = client.get(f"/v1/jobs/{job['id']}/events?limit=100").json()["data"]
    return [e for e in events if e["type"] == kind]


def test_a_first_version_becomes_champion_then_only_a_winner_replaces_it(
    client: TestClient, train_job: Callable[..., dict[str, Any]]
) -> None:
    first = train_job("cancer.csv", FULL, **_spec(WEAK))
    v1 = _model(client, first)
    assert v1["status"] == "deployed" and _champion(client) == 1
    assert v1["comparison"]["champion_version"] is None
    assert v1["comparison"]["passed"] is True
    assert v1["gate"]["beats"] == "champion" and v1["gate"]["passed"] is True
    assert len(_events(client, first, "model.champion")) == 1

    better = train_job("cancer.csv", FULL, **_spec(STRONG))
    v2 = _model(client, better)
    comparison = v2["comparison"]
    assert (comparison["champion_version"], comparison["champion_model_id"]) == (1, v1["id"])
    assert comparison["candidate"] >= comparison["champion"] + 0.005, comparison
    assert comparison["passed"] is True and v2["status"] == "deployed"
    assert _champion(client) == 2
    promoted = _events(client, better, "model.champion")
    assert len(promoted) == 1 and promoted[0]["data"]["comparison"] == comparison

    worse = train_job("cancer.csv", FULL, **_spec(WEAK))
    v3 = _model(client, worse)
    assert v3["status"] == "rejected" and v3["version"] == 3
    assert v3["comparison"]["passed"] is False and v3["comparison"]["champion_version"] == 2
    assert "did not beat champion version 2" in v3["gate"]["reason"]
    assert _champion(client) == 2
    assert len(_events(client, worse, "model.not_promoted")) == 1
    served = client.post(
        "/v1/model-names/cancer/aliases/champion/predict",
        json={"inputs": TABLE.drop_columns(["diagnosis"]).slice(0, 3).to_pylist()},
    )
    assert served.status_code == 200 and served.json()["model_id"] == v2["id"]

    changes = client.get("/v1/model-names/cancer/alias-changes").json()["data"]
    assert [(c["from_version"], c["to_version"], c["set_by"]) for c in changes] == [
        (1, 2, better["id"]),
        (None, 1, first["id"]),
    ]


def test_the_champion_is_scored_on_the_candidates_holdout_through_its_own_preprocessing(
    client: TestClient, train_job: Callable[..., dict[str, Any]]
) -> None:
    """Retrained on more rows (so fitted with other means and deviations), the candidate
    is compared on its own holdout; the champion's score there is what predicting
    those raw rows with the champion gives."""
    fewer = table_to_csv(TABLE.slice(0, 250))
    v1 = _model(client, train_job("cancer.csv", fewer, **_spec(WEAK)))
    retrained = train_job("cancer.csv", FULL, **_spec(STRONG))
    v2 = _model(client, retrained)
    comparison = v2["comparison"]

    assignment = assign_rows(
        TABLE.num_rows, seed=1, holdout_fraction=0.2, validation_fraction=0.1, shards=2
    )
    holdout = TABLE.filter(pa.array(assignment == HOLDOUT))
    assert comparison["rows"] == holdout.num_rows > 0
    inputs = holdout.drop_columns(["diagnosis"]).to_pylist()
    truth = holdout.column("diagnosis").to_pylist()
    for model, side in ((v1, "champion"), (v2, "candidate")):
        answer = client.post(f"/v1/models/{model['id']}/predict", json={"inputs": inputs})
        assert answer.status_code == 200, answer.text
        accuracy = float(np.mean(np.array(answer.json()["predictions"]) == np.array(truth)))
        assert comparison[side] == pytest.approx(accuracy, abs=1e-9), side
    assert comparison["passed"] is True and _champion(client) == 2


def test_the_margin_must_be_won(
    client: TestClient, train_job: Callable[..., dict[str, Any]]
) -> None:
    train_job("cancer.csv", FULL, **_spec(WEAK))
    gated = _spec(STRONG)
    gated["deploy_if"] = {**GATE, "by": 0.9}
    v2 = _model(client, train_job("cancer.csv", FULL, **gated))
    assert v2["status"] == "rejected" and v2["comparison"]["passed"] is False
    assert v2["comparison"]["candidate"] > v2["comparison"]["champion"]
    assert _champion(client) == 1


def test_a_first_version_falls_back_to_the_absolute_gate(
    client: TestClient, train_job: Callable[..., dict[str, Any]]
) -> None:
    strict = _spec(STRONG)
    strict["deploy_if"] = {**GATE, "min": 1.0001}
    v1 = _model(client, train_job("cancer.csv", FULL, **strict))
    assert v1["status"] == "rejected" and "below deploy_if.min" in v1["gate"]["reason"]
    assert v1["comparison"]["passed"] is False and _champion(client) is None


def test_a_champion_that_cannot_read_the_rows_is_not_replaced(
    client: TestClient, train_job: Callable[..., dict[str, Any]]
) -> None:
    train_job("cancer.csv", FULL, **_spec(WEAK))
    narrower = table_to_csv(TABLE.drop_columns(["mean_radius"]))
    v2 = _model(client, train_job("cancer.csv", narrower, **_spec(STRONG)))
    assert v2["status"] == "rejected" and v2["comparison"]["passed"] is False
    assert "'mean_radius', which this job's dataset lacks" in v2["comparison"]["reason"]
    assert _champion(client) == 1


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"model_name": None}, "deploy_if.beats"),
        ({"validation": {"holdout_fraction": 0.0}}, "validation.holdout_fraction"),
        ({"deploy_if": {"metric": "accuracy", "min": 0.5, "by": 0.01}}, "deploy_if"),
        ({"deploy_if": {"metric": "accuracy", "beats": "production"}}, "deploy_if.beats"),
    ],
)
def test_a_champion_gate_it_cannot_apply_is_refused(
    client: TestClient,
    ready_dataset: Callable[[str, bytes], str],
    change: dict[str, Any],
    param: str,
) -> None:
    dataset_id = ready_dataset("cancer.csv", FULL)
    spec = {**_spec(STRONG), **change, "dataset_id": dataset_id}
    spec = {k: v for k, v in spec.items() if v is not None}
    response = client.post("/v1/jobs", json=spec)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["param"] == param


def test_two_candidates_finishing_together_cannot_both_become_champion(
    client: TestClient,
    ready_dataset: Callable[[str, bytes], str],
    sessions: sessionmaker[Session],
    store: BlobStore,
    params: ParamStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both compare against no champion; the first to record becomes champion, the
    second finds the champion moved, is compared again against the first, and is
    promoted only if it beats it."""
    dataset_id = ready_dataset("cancer.csv", FULL)
    job_ids = []
    for training in (STRONG, WEAK):
        created = client.post("/v1/jobs", json={**_spec(training), "dataset_id": dataset_id})
        assert created.status_code == 201, created.text
        job_ids.append(created.json()["id"])
        run_job(sessions, store, params, job_ids[-1], stop_before="finalize")
    generations = AliasGenerations(params.redis)
    scored, works = [], []
    for job_id in job_ids:
        with session_scope(sessions) as session:
            work = finalize.read_finalize_input(session, job_id)
        assert work is not None and work.champion is None
        works.append(work)
        scored.append(finalize.score_and_write(store, work))
    stale_work = works[1]
    with session_scope(sessions) as session:
        assert finalize.record_model(session, scored[0], generations)
    with pytest.raises(ChampionMoved), session_scope(sessions) as session:
        finalize.record_model(session, scored[1], generations)
    assert client.get(f"/v1/jobs/{job_ids[1]}").json()["status"] == "running"

    # The worker's steps, first handed the snapshot read before the champion moved.
    stale, real_read = stale_work, finalize.read_finalize_input
    reads: list[str] = []

    def read(session: Session, job_id: str) -> finalize.FinalizeInput | None:
        reads.append(job_id)
        return stale if len(reads) == 1 else real_read(session, job_id)

    written: list[str] = []
    real_score = finalize.score_and_write

    def score(store_: BlobStore, work: finalize.FinalizeInput) -> finalize.Scored:
        result = real_score(store_, work)
        written.append(result.artifact_key)
        return result

    monkeypatch.setattr(finalize, "read_finalize_input", read)
    monkeypatch.setattr(finalize, "score_and_write", score)
    assert finalize.finalize_in_steps(
        lambda: session_scope(sessions), store, job_ids[1], generations
    )
    assert len(reads) == len(written) == 2
    # The artifact scored against the champion that moved was removed, not orphaned.
    assert not store.exists(written[0]) and store.exists(written[1])

    first = _model(client, client.get(f"/v1/jobs/{job_ids[0]}").json())
    second = _model(client, client.get(f"/v1/jobs/{job_ids[1]}").json())
    assert second["comparison"]["champion_model_id"] == first["id"]
    assert second["comparison"]["passed"] is False and second["status"] == "rejected"
    assert _champion(client) == first["version"]
    changes = client.get("/v1/model-names/cancer/alias-changes").json()["data"]
    assert [(c["from_version"], c["to_version"]) for c in changes] == [(None, first["version"])]
