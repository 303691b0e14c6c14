"""Sweeps: trials as jobs on one preparation of the data, asked by optuna, pruned on
their validation loss, the best one delivered; run in-process step by step as the
worker runs them (`inprocess.run_sweep`)."""

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from inprocess import RecordingDispatcher, run_sweep
from sample_data import breast_cancer_table, iris_table, table_to_csv
from sqlalchemy.orm import Session, sessionmaker

from app.db import session_scope
from app.paramstore import ParamStore
from app.storage import BlobStore
from app.sweeps.step import step_sweep
from app.tables import Job

IRIS = table_to_csv(iris_table())
CANCER = table_to_csv(breast_cancer_table())
MakeDataset = Callable[[str, bytes], str]


def _sweep_body(dataset_id: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "template": {
            "dataset_id": dataset_id,
            "target": "species",
            "model": {"type": "mlp", "hidden_layers": [8]},
            "distribution": {"shards": 2},
            "training": {"rounds": 4, "seed": 1},
        },
        "space": {
            "training.learning_rate": {"log_uniform": [1e-3, 0.3]},
            "model.hidden_layers": {"choice": [[4], [16]]},
            "training.l2": {"uniform": [0, 0.01]},
            "training.rounds": {"int": [3, 6], "step": 3},
        },
        "metric": "accuracy",
        "max_trials": 5,
        "parallelism": 2,
        "seed": 0,
    }
    body.update(changes)
    return body


def _run(
    client: TestClient,
    sessions: sessionmaker[Session],
    store: BlobStore,
    params: ParamStore,
    body: dict[str, Any],
    **kwargs: Any,
) -> dict[str, Any]:
    created = client.post("/v1/sweeps", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "running" and created.json()["trials"] == []
    run_sweep(sessions, store, params, created.json()["id"], **kwargs)
    return dict(client.get(f"/v1/sweeps/{created.json()['id']}").json())


def test_a_sweep_trains_its_trials_on_one_preparation_and_deploys_the_best(
    client: TestClient,
    ready_dataset: MakeDataset,
    sessions: sessionmaker[Session],
    store: BlobStore,
    params: ParamStore,
    builds: list[str],
) -> None:
    dataset_id = ready_dataset("iris.csv", IRIS)
    sweep = _run(client, sessions, store, params, _sweep_body(dataset_id, pruner="none"))
    assert sweep["status"] == "succeeded", sweep
    trials = sweep["trials"]
    assert [t["number"] for t in trials] == [0, 1, 2, 3, 4]
    assert {t["state"] for t in trials} == {"done"}
    # One preparation for the whole sweep: every other trial trains on trial 0's shards.
    assert builds == [trials[0]["job_id"]]
    with sessions() as session:
        jobs = {t["job_id"]: session.query(Job).filter_by(id=t["job_id"]).one() for t in trials}
    assert all(jobs[t["job_id"]].shards_from == trials[0]["job_id"] for t in trials[1:])
    assert all(job.sweep_id == sweep["id"] for job in jobs.values())
    # The values drawn are in the space and reach the trial's job spec.
    for trial in trials:
        drawn = trial["params"]
        assert 1e-3 <= drawn["training.learning_rate"] <= 0.3
        assert drawn["model.hidden_layers"] in ([4], [16])
        assert drawn["training.rounds"] in (3, 6)
        spec = client.get(f"/v1/jobs/{trial['job_id']}").json()["spec"]
        assert spec["training"]["learning_rate"] == drawn["training.learning_rate"]
        assert spec["model"]["hidden_layers"] == drawn["model.hidden_layers"]
        assert spec["training"]["rounds"] == drawn["training.rounds"]
        assert spec.get("model_name") is None and spec.get("deploy_if") is None
        # The score is the validation accuracy of the round the job kept.
        job = jobs[trial["job_id"]]
        kept = job.best_round if job.best_round is not None else job.current_round
        rounds = client.get(f"/v1/jobs/{trial['job_id']}/metrics").json()["data"]
        assert (
            trial["score"]
            == next(r for r in rounds if r["round"] == kept)["val_metrics"]["accuracy"]
        )
        assert trial["val_losses"] == [r["val_loss"] for r in rounds]
        assert trial["seconds"] >= 0 and trial["model_id"] is not None
    best = max(trials, key=lambda t: (t["score"], -t["number"]))
    assert sweep["best_trial"]["number"] == best["number"]
    assert sweep["best_trial"]["params"] == best["params"]
    assert sweep["best_trial"]["score"] == best["score"]
    assert sweep["model_id"] == sweep["best_trial"]["model_id"] == best["model_id"]
    assert sweep["final_job_id"] is None
    # Only the best trial's model is deployed; the others stay registered, undeployed.
    statuses = {t["number"]: client.get(f"/v1/models/{t['model_id']}").json()["status"]
                for t in trials}  # fmt: skip
    assert statuses[best["number"]] == "deployed"
    assert {s for n, s in statuses.items() if n != best["number"]} == {"undeployed"}
    predicted = client.post(
        f"/v1/models/{sweep['model_id']}/predict",
        json={"inputs": [{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4,
                           "petal_width": 0.2}]},
    )  # fmt: skip
    assert predicted.status_code == 200, predicted.text
    events = client.get(f"/v1/sweeps/{sweep['id']}/events?limit=1000").json()["data"]
    types = [e["type"] for e in events]
    assert types[0] == "sweep.created" and types[-1] == "sweep.status"
    assert types.count("trial.started") == 5 and types.count("trial.done") == 5
    assert "sweep.best_trial" in types
    assert sweep["counts"] == {"running": 0, "done": 5, "pruned": 0, "failed": 0, "cancelled": 0}
    listed = client.get(f"/v1/sweeps/{sweep['id']}/trials").json()["data"]
    assert listed == trials


# What this test checks is the search, not the database: PostgreSQL only (the main flow,
# cancel, redelivered steps and the quota run on SQLite too).
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_cross_validation_scores_each_trial_by_its_folds_and_trains_the_best_on_all(
    client: TestClient,
    ready_dataset: MakeDataset,
    sessions: sessionmaker[Session],
    store: BlobStore,
    params: ParamStore,
    builds: list[str],
) -> None:
    dataset_id = ready_dataset("iris.csv", IRIS)
    body = _sweep_body(dataset_id, cv_folds=3, max_trials=3, pruner="none")
    sweep = _run(client, sessions, store, params, body)
    assert sweep["status"] == "succeeded", sweep
    trials = sweep["trials"]
    for trial in trials:
        assert trial["state"] == "done" and len(trial["job_ids"]) == 3
        assert trial["model_id"] is None
        folds = [client.get(f"/v1/jobs/{j}").json() for j in trial["job_ids"]]
        assert [f["spec"]["validation"]["cv_fold"] for f in folds] == [0, 1, 2]
        assert {f["spec"]["validation"]["cv_folds"] for f in folds} == {3}
        assert len(trial["fold_scores"]) == 3
        assert trial["score"] == pytest.approx(np.mean(trial["fold_scores"]))
        assert trial["score_std"] == pytest.approx(np.std(trial["fold_scores"]))
    # One preparation per fold, shared by every trial, and one for the final job, which
    # trains the best settings on the template's own split (every fold's rows).
    first = trials[0]["job_ids"]
    final = client.get(f"/v1/jobs/{sweep['final_job_id']}").json()
    assert builds == [*first, final["id"]]
    assert final["status"] == "succeeded" and final["sweep_id"] == sweep["id"]
    assert final["spec"]["validation"]["cv_folds"] is None
    best = sweep["best_trial"]
    assert final["spec"]["training"]["learning_rate"] == best["params"]["training.learning_rate"]
    assert sweep["model_id"] == final["model_id"] == best["model_id"]
    assert client.get(f"/v1/models/{sweep['model_id']}").json()["status"] == "deployed"


def test_the_folds_of_a_cross_validation_are_disjoint_and_cover_every_row_but_the_holdout() -> None:
    from app.training.split import HOLDOUT, VALIDATION, assign_rows

    plain = assign_rows(1000, seed=4, holdout_fraction=0.2, validation_fraction=0.1, shards=3)
    folds = [
        assign_rows(
            1000, seed=4, holdout_fraction=0.2, validation_fraction=0.1, shards=3, cv=(5, fold)
        )
        for fold in range(5)
    ]
    for assignment in folds:
        # The holdout is the plain split's: the gate scores every fold's model alike.
        assert np.array_equal(assignment == HOLDOUT, plain == HOLDOUT)
        assert set(np.unique(assignment[assignment >= 0])) == {0, 1, 2}
    validation = np.stack([a == VALIDATION for a in folds])
    assert validation.sum(axis=0).max() == 1  # disjoint
    assert np.array_equal(validation.any(axis=0), plain != HOLDOUT)  # covering
    assert sorted(validation.sum(axis=1)) == [160] * 5
    again = assign_rows(1000, seed=4, holdout_fraction=0.2, validation_fraction=0.1, shards=3,
                        cv=(5, 2))  # fmt: skip
    assert np.array_equal(again, folds[2])
    other = assign_rows(1000, seed=5, holdout_fraction=0.2, validation_fraction=0.1, shards=3,
                        cv=(5, 2))  # fmt: skip
    assert not np.array_equal(other, folds[2])


def test_a_choice_of_model_blocks_prepares_once_per_encoding(
    client: TestClient,
    ready_dataset: MakeDataset,
    sessions: sessionmaker[Session],
    store: BlobStore,
    params: ParamStore,
    builds: list[str],
) -> None:
    dataset_id = ready_dataset("iris.csv", IRIS)
    body = _sweep_body(
        dataset_id,
        space={
            "model": {
                "choice": [
                    {"type": "logistic_regression"},
                    {"type": "gradient_boosted_trees", "max_depth": 2, "n_trees": 4},
                ]
            },
            "training.learning_rate": {"log_uniform": [0.05, 0.3]},
        },
        max_trials=4,
        sampler="random",
        pruner="none",
    )
    sweep = _run(client, sessions, store, params, body)
    assert sweep["status"] == "succeeded", sweep
    kinds = {t["job_id"]: t["params"]["model"]["type"] for t in sweep["trials"]}
    assert set(kinds.values()) == {"logistic_regression", "gradient_boosted_trees"}
    # The first trial of each encoding prepares; the rest share its shards.
    firsts = [next(j for j, k in kinds.items() if k == kind) for kind in
              dict.fromkeys(kinds.values())]  # fmt: skip
    assert sorted(builds) == sorted(firsts)
    for trial in sweep["trials"]:
        assert trial["state"] == "done", trial
        model = client.get(f"/v1/jobs/{trial['job_id']}").json()["spec"]["model"]
        assert model["type"] == trial["params"]["model"]["type"]


# What this test checks is the search, not the database: PostgreSQL only (the main flow,
# cancel, redelivered steps and the quota run on SQLite too).
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_template_with_a_model_name_and_a_gate_delivers_through_a_final_job(
    client: TestClient,
    ready_dataset: MakeDataset,
    sessions: sessionmaker[Session],
    store: BlobStore,
    params: ParamStore,
    builds: list[str],
) -> None:
    dataset_id = ready_dataset("iris.csv", IRIS)
    body = _sweep_body(dataset_id, max_trials=3, pruner="none")
    body["template"] |= {
        "model_name": "iris-swept",
        "deploy_if": {"metric": "accuracy", "min": 0.5, "beats": "champion"},
    }
    sweep = _run(client, sessions, store, params, body)
    assert sweep["status"] == "succeeded", sweep
    final = client.get(f"/v1/jobs/{sweep['final_job_id']}").json()
    best = next(t for t in sweep["trials"] if t["number"] == sweep["best_trial"]["number"])
    # The trials carried neither: only the final job is a version of the name.
    for trial in sweep["trials"]:
        spec = client.get(f"/v1/jobs/{trial['job_id']}").json()["spec"]
        assert spec["model_name"] is None and spec["deploy_if"] is None
    assert final["spec"]["model_name"] == "iris-swept"
    assert final["spec"]["deploy_if"]["beats"] == "champion"
    # On the trials' shards, with the best trial's settings: the same model, bit for bit.
    assert builds == [sweep["trials"][0]["job_id"]]
    assert (
        final["spec"]["model"] == client.get(f"/v1/jobs/{best['job_id']}").json()["spec"]["model"]
    )
    model = client.get(f"/v1/models/{sweep['model_id']}").json()
    assert model["gate"]["passed"] is True and model["status"] == "deployed"
    assert model["metrics"] == client.get(f"/v1/models/{best['model_id']}").json()["metrics"]
    name = client.get("/v1/model-names/iris-swept").json()
    assert [v["model_id"] for v in name["versions"]] == [sweep["model_id"]]
    assert name["aliases"][0]["alias"] == "champion"


# What this test checks is the search, not the database: PostgreSQL only (the main flow,
# cancel, redelivered steps and the quota run on SQLite too).
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_trials_falling_behind_are_pruned_and_their_jobs_stopped(
    client: TestClient,
    ready_dataset: MakeDataset,
    sessions: sessionmaker[Session],
    store: BlobStore,
    params: ParamStore,
) -> None:
    dataset_id = ready_dataset("cancer.csv", CANCER)
    body = _sweep_body(
        dataset_id,
        space={"training.learning_rate": {"log_uniform": [1e-6, 0.3]}},
        max_trials=10,
        sampler="random",
        pruner="median",
    )
    body["template"] |= {
        "target": "diagnosis",
        "model": {"type": "logistic_regression"},
        "training": {"rounds": 8, "seed": 1, "early_stopping": None},
    }
    sweep = _run(client, sessions, store, params, body)
    assert sweep["status"] == "succeeded", sweep
    pruned = [t for t in sweep["trials"] if t["state"] == "pruned"]
    assert pruned, [(t["params"], t["val_losses"]) for t in sweep["trials"]]
    done = [t for t in sweep["trials"] if t["state"] == "done"]
    for trial in pruned:
        job = client.get(f"/v1/jobs/{trial['job_id']}").json()
        # Stopped after the warm-up, before its last round, behind the median of the
        # trials done by then (all among the done ones now, so behind the best of them).
        assert job["status"] == "cancelled" and job["model_id"] is None
        assert 2 <= trial["rounds"] < 8 and trial["score"] is None
        at = trial["rounds"] - 1
        others = [t["val_losses"][at] for t in done if len(t["val_losses"]) > at]
        assert len(others) >= 3 and trial["val_losses"][at] > min(others)
    events = client.get(f"/v1/sweeps/{sweep['id']}/events?limit=1000").json()["data"]
    assert sum(e["type"] == "trial.pruned" for e in events) == len(pruned)
    assert all(t["number"] not in {p["number"] for p in pruned} for t in done)
    assert sweep["best_trial"]["number"] in {t["number"] for t in done}


def test_a_cancelled_sweep_stops_its_trials_and_starts_no_more(
    client: TestClient,
    ready_dataset: MakeDataset,
    sessions: sessionmaker[Session],
    store: BlobStore,
    params: ParamStore,
) -> None:
    dataset_id = ready_dataset("iris.csv", IRIS)
    created = client.post("/v1/sweeps", json=_sweep_body(dataset_id, max_trials=6)).json()
    cancelled: list[dict[str, Any]] = []

    def cancel_with_two_running(kind: str, args: dict[str, Any]) -> None:
        running = client.get(f"/v1/sweeps/{created['id']}").json()["counts"]["running"]
        if kind == "round" and running == 2 and not cancelled:
            response = client.post(f"/v1/sweeps/{created['id']}/cancel")
            assert response.status_code == 200, response.text
            cancelled.append(response.json())

    run_sweep(sessions, store, params, created["id"], after_each=cancel_with_two_running)
    sweep = client.get(f"/v1/sweeps/{created['id']}").json()
    assert sweep["status"] == "cancelled" and cancelled[0]["status"] == "cancelled"
    assert len(sweep["trials"]) == 2
    assert {t["state"] for t in sweep["trials"]} == {"cancelled"}
    for trial in sweep["trials"]:
        assert client.get(f"/v1/jobs/{trial['job_id']}").json()["status"] == "cancelled"
    # Idempotent, and the quota it held is free again.
    again = client.post(f"/v1/sweeps/{created['id']}/cancel")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    assert sweep["best_trial"] is None and sweep["model_id"] is None


def test_a_finished_sweep_cannot_be_cancelled(
    client: TestClient,
    ready_dataset: MakeDataset,
    sessions: sessionmaker[Session],
    store: BlobStore,
    params: ParamStore,
) -> None:
    dataset_id = ready_dataset("iris.csv", IRIS)
    sweep = _run(client, sessions, store, params, _sweep_body(dataset_id, max_trials=2))
    response = client.post(f"/v1/sweeps/{sweep['id']}/cancel")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "sweep_finished"


def test_a_redelivered_or_concurrent_step_asks_for_no_extra_trial(
    client: TestClient,
    ready_dataset: MakeDataset,
    sessions: sessionmaker[Session],
    store: BlobStore,
    params: ParamStore,
) -> None:
    dataset_id = ready_dataset("iris.csv", IRIS)
    created = client.post("/v1/sweeps", json=_sweep_body(dataset_id, max_trials=6)).json()
    outbox = RecordingDispatcher()
    for _ in range(3):
        with session_scope(sessions) as session:
            step_sweep(session, outbox, created["id"])  # type: ignore[arg-type]
    sweep = client.get(f"/v1/sweeps/{created['id']}").json()
    # Trial 1 waits for trial 0's shards; a step asks for nothing more until they exist.
    assert [t["number"] for t in sweep["trials"]] == [0]
    assert [kind for kind, _ in outbox.sent] == ["prepare"]
    ran = run_sweep(sessions, store, params, created["id"], pending=list(outbox.sent))
    assert ran.count("prepare") == 6
    sweep = client.get(f"/v1/sweeps/{created['id']}").json()
    assert sweep["status"] == "succeeded" and len(sweep["trials"]) == 6


# What this test checks is the search, not the database: PostgreSQL only (the main flow,
# cancel, redelivered steps and the quota run on SQLite too).
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_the_same_sweep_and_seed_draw_the_same_trials(
    client: TestClient,
    ready_dataset: MakeDataset,
    sessions: sessionmaker[Session],
    store: BlobStore,
    params: ParamStore,
) -> None:
    dataset_id = ready_dataset("iris.csv", IRIS)
    body = _sweep_body(dataset_id, max_trials=4, pruner="none")
    first = _run(client, sessions, store, params, body)
    second = _run(client, sessions, store, params, body)
    assert [t["params"] for t in first["trials"]] == [t["params"] for t in second["trials"]]
    assert [t["score"] for t in first["trials"]] == [t["score"] for t in second["trials"]]
    other = _run(client, sessions, store, params, {**body, "seed": 1})
    assert [t["params"] for t in other["trials"]] != [t["params"] for t in first["trials"]]


# What this test checks is the search, not the database: PostgreSQL only (the main flow,
# cancel, redelivered steps and the quota run on SQLite too).
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_the_trials_chart_is_a_png_with_the_importances(
    client: TestClient,
    ready_dataset: MakeDataset,
    sessions: sessionmaker[Session],
    store: BlobStore,
    params: ParamStore,
) -> None:
    from app.sweeps.importance import param_importances
    from app.sweeps.repository import SweepRepository
    from app.sweeps.spec import SweepSpec
    from app.sweeps.step import records
    from app.tenancy.scope import SYSTEM

    dataset_id = ready_dataset("iris.csv", IRIS)
    empty = client.post("/v1/sweeps", json=_sweep_body(dataset_id)).json()
    assert client.get(f"/v1/sweeps/{empty['id']}/trials.png").content.startswith(b"\x89PNG")
    sweep = _run(
        client, sessions, store, params, _sweep_body(dataset_id, max_trials=5, pruner="none")
    )
    response = client.get(f"/v1/sweeps/{sweep['id']}/trials.png")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert (
        response.content.startswith(b"\x89PNG")
        and response.content != client.get(f"/v1/sweeps/{empty['id']}/trials.png").content
    )
    with sessions() as session:
        trials = SweepRepository(session, SYSTEM).trials(sweep["id"])
        found = param_importances(SweepSpec.model_validate(sweep["spec"]), records(trials))
    assert found is not None and set(found) == set(sweep["spec"]["space"])
    assert sum(found.values()) == pytest.approx(1.0)
    assert client.get("/v1/sweeps/swp_000000000000000000000000/trials.png").status_code == 404


def test_the_event_stream_follows_the_sweep_to_its_end(
    client: TestClient,
    ready_dataset: MakeDataset,
    sessions: sessionmaker[Session],
    store: BlobStore,
    params: ParamStore,
) -> None:
    dataset_id = ready_dataset("iris.csv", IRIS)
    sweep = _run(client, sessions, store, params, _sweep_body(dataset_id, max_trials=2))
    with client.stream(
        "GET", f"/v1/sweeps/{sweep['id']}/events", headers={"Accept": "text/event-stream"}
    ) as stream:
        text = "".join(stream.iter_text())
    listed = client.get(f"/v1/sweeps/{sweep['id']}/events?limit=1000").json()["data"]
    assert [line[len("event: ") :] for line in text.splitlines() if line.startswith("event: ")] == [
        e["type"] for e in listed
    ]
    after = client.get(f"/v1/sweeps/{sweep['id']}/events?after={listed[1]['id']}").json()
    assert after["data"] == listed[2:]


@pytest.mark.parametrize(
    ("change", "status", "param"),
    [
        ({"space": {"training.seed": {"int": [0, 3]}}}, 422, "space.training.seed"),
        ({"space": {"distribution.shards": {"int": [1, 3]}}}, 422, "space.distribution.shards"),
        ({"space": {"training.nope": {"uniform": [0, 1]}}}, 422, "space.training.nope"),
        ({"space": {"training.learning_rate": {"uniform": [0, 1]}}}, 422,
         "space.training.learning_rate"),
        ({"space": {"model": {"choice": [{"type": "mlp"}, {"type": "linear_regression"}]}}},
         422, "space.model"),
        ({"metric": "rmse"}, 422, "metric"),
        ({"template": {"target": "nope"}}, 422, "template.target"),
        ({"template": {"dataset_id": "ds_000000000000000000000000"}}, 404,
         "template.dataset_id"),
        ({"template": {"init_from": {"model": "mdl_000000000000000000000000"}}}, 422,
         "template.init_from"),
        ({"template": {"validation": {"validation_fraction": 0}}}, 422,
         "template.validation.validation_fraction"),
        ({"template": {"validation": {"cv_folds": 3, "cv_fold": 0}}}, 422,
         "template.validation.cv_folds"),
        ({"template": {"distribution": {"shards": 200}}, "cv_folds": 10}, 422,
         "template.distribution.shards"),
        ({"template": {"model": {"type": "mlp", "hidden_layers": [8]},
                       "deploy_if": {"metric": "accuracy", "beats": "champion"}}}, 422,
         "template.deploy_if.beats"),
    ],
)  # fmt: skip
def test_a_sweep_that_cannot_run_is_refused_naming_the_field(
    client: TestClient,
    ready_dataset: MakeDataset,
    change: dict[str, Any],
    status: int,
    param: str,
) -> None:
    dataset_id = ready_dataset("iris.csv", IRIS)
    body = _sweep_body(dataset_id)
    for key, value in change.items():
        if key == "template":
            body["template"] = {**body["template"], **value}
        else:
            body[key] = value
    response = client.post("/v1/sweeps", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param, response.text
    assert client.get("/v1/sweeps").json()["data"] == []


def test_unknown_sweeps_are_404(client: TestClient) -> None:
    unknown = "swp_000000000000000000000000"
    for method, path in [
        ("GET", f"/v1/sweeps/{unknown}"),
        ("GET", f"/v1/sweeps/{unknown}/trials"),
        ("GET", f"/v1/sweeps/{unknown}/events"),
        ("POST", f"/v1/sweeps/{unknown}/cancel"),
    ]:
        response = client.request(method, path)
        assert response.status_code == 404, (path, response.text)
        assert response.json()["error"]["code"] == "not_found"


def test_a_sweep_holds_its_parallelism_of_the_running_job_quota(
    client: TestClient,
    settings: Any,
    ready_dataset: MakeDataset,
    sessions: sessionmaker[Session],
    store: BlobStore,
    params: ParamStore,
) -> None:
    from app.db import session_factory
    from app.tenancy.service import set_limit

    with session_scope(session_factory(settings.database_url)) as session:
        set_limit(session, "tests", "max_running_jobs", 3)
    dataset_id = ready_dataset("iris.csv", IRIS)
    job = {"dataset_id": dataset_id, "target": "species", "distribution": {"shards": 2}}
    assert client.post("/v1/jobs", json=job).status_code == 201
    too_wide = client.post("/v1/sweeps", json=_sweep_body(dataset_id, parallelism=3))
    assert too_wide.status_code == 429, too_wide.text
    assert "max_running_jobs of 3" in too_wide.json()["error"]["message"]
    sweep = client.post("/v1/sweeps", json=_sweep_body(dataset_id, parallelism=2))
    assert sweep.status_code == 201, sweep.text
    # 1 job + a sweep of 2: full, however many of the sweep's trials run now.
    refused = client.post("/v1/jobs", json=job)
    assert refused.status_code == 429 and "held by running sweeps" in refused.text
    # Its trials are jobs, yet they run inside the share the sweep holds.
    run_sweep(sessions, store, params, sweep.json()["id"])
    assert client.get(f"/v1/sweeps/{sweep.json()['id']}").json()["status"] == "succeeded"
    assert client.post("/v1/jobs", json=job).status_code == 201


def test_a_dataset_under_a_running_sweep_is_not_deleted(
    client: TestClient, ready_dataset: MakeDataset
) -> None:
    dataset_id = ready_dataset("iris.csv", IRIS)
    sweep = client.post("/v1/sweeps", json=_sweep_body(dataset_id)).json()
    response = client.delete(f"/v1/datasets/{dataset_id}")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "dataset_in_use"
    assert sweep["id"] in response.json()["error"]["message"]
    assert client.post(f"/v1/sweeps/{sweep['id']}/cancel").status_code == 200
    assert client.delete(f"/v1/datasets/{dataset_id}").status_code in (200, 204)


def test_sweeps_are_listed_newest_first_and_only_to_their_tenant(
    client: TestClient, settings: Any, ready_dataset: MakeDataset
) -> None:
    from dbsetup import issue_key

    dataset_id = ready_dataset("iris.csv", IRIS)
    first = client.post("/v1/sweeps", json=_sweep_body(dataset_id)).json()
    second = client.post("/v1/sweeps", json=_sweep_body(dataset_id, seed=3)).json()
    listed = client.get("/v1/sweeps?limit=1").json()
    assert [s["id"] for s in listed["data"]] == [second["id"]] and listed["has_more"]
    rest = client.get(f"/v1/sweeps?after={second['id']}").json()
    assert [s["id"] for s in rest["data"]] == [first["id"]]
    other = {"Authorization": f"Bearer {issue_key(settings.database_url, 'other')}"}
    assert client.get("/v1/sweeps", headers=other).json()["data"] == []
    for path in (f"/v1/sweeps/{first['id']}", f"/v1/sweeps/{first['id']}/trials.png"):
        assert client.get(path, headers=other).status_code == 404
    assert client.post(f"/v1/sweeps/{first['id']}/cancel", headers=other).status_code == 404


def test_an_idempotency_key_makes_one_sweep(client: TestClient, ready_dataset: MakeDataset) -> None:
    dataset_id = ready_dataset("iris.csv", IRIS)
    headers = {"Idempotency-Key": "sweep-once"}
    first = client.post("/v1/sweeps", json=_sweep_body(dataset_id), headers=headers)
    again = client.post("/v1/sweeps", json=_sweep_body(dataset_id), headers=headers)
    assert first.status_code == 201 and again.json()["id"] == first.json()["id"]
    assert len(client.get("/v1/sweeps").json()["data"]) == 1
    other = client.post("/v1/sweeps", json=_sweep_body(dataset_id, seed=9), headers=headers)
    assert other.status_code == 422, other.text
