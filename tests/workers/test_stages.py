"""The worker stages on real SQL and Redis: redelivered messages do nothing twice,
lost Redis keys are recovered from checkpoints, failures end the job with a reason."""

from collections.abc import Callable

import pytest
import torch
from inprocess import run_job
from sample_data import iris_table, table_to_csv
from sqlalchemy.orm import Session, sessionmaker

from app.db import session_scope
from app.jobs.checkpoints import load_checkpoint
from app.jobs.repository import JobRepository
from app.jobs.stages import finalize, merge, prepare, train
from app.tables import Job
from app.tenancy.scope import SYSTEM

MakeDataset = Callable[[str, bytes], str]


def load_job(sessions: sessionmaker[Session], job_id: str) -> Job:
    with session_scope(sessions) as session:
        job = JobRepository(session, SYSTEM).get(job_id)
        assert job is not None
        return job


def train_all(sessions, store, params, job_id: str, round_: int, shards: int = 4) -> None:  # type: ignore[no-untyped-def]
    for shard in range(shards):
        with session_scope(sessions) as session:
            train.train_shard(session, store, params, job_id, round_, shard)


def test_shards_cover_training_rows_once(started_job, sessions) -> None:  # type: ignore[no-untyped-def]
    job = load_job(sessions, started_job())
    assert job.status == "running"
    plan = job.plan
    assert plan is not None
    assert sum(plan["shard_rows"]) + plan["validation_rows"] + plan["holdout_rows"] == 150
    assert max(plan["shard_rows"]) - min(plan["shard_rows"]) <= 1
    assert plan["network"]["n_features"] == 4 and plan["network"]["n_outputs"] == 3


def test_redelivered_shard_task_keeps_the_first_result(  # type: ignore[no-untyped-def]
    started_job, sessions, store, params
) -> None:
    job_id = started_job()
    train_all(sessions, store, params, job_id, 1)
    first = params.get_shard(job_id, 1, 0)
    with session_scope(sessions) as session:
        train.train_shard(session, store, params, job_id, 1, 0)
    again = params.get_shard(job_id, 1, 0)
    assert first is not None and again is not None
    assert again.seconds == first.seconds  # not retrained: the stored result stands


def test_duplicate_merge_advances_the_job_once(started_job, sessions, store, params) -> None:  # type: ignore[no-untyped-def]
    job_id = started_job(training={"rounds": 3})
    train_all(sessions, store, params, job_id, 1)
    with session_scope(sessions) as session:
        first = merge.merge_round(session, store, params, job_id, 1)
    with session_scope(sessions) as session:
        second = merge.merge_round(session, store, params, job_id, 1)
    assert first.next == "round" and first.round == 2
    assert second.next == "none"
    assert load_job(sessions, job_id).current_round == 1
    with session_scope(sessions) as session:
        assert len(JobRepository(session, SYSTEM).rounds(job_id)) == 1


def test_lost_redis_keys_resume_from_the_checkpoint(  # type: ignore[no-untyped-def]
    started_job, sessions, store, params
) -> None:
    job_id = started_job(training={"rounds": 2})
    train_all(sessions, store, params, job_id, 1)
    with session_scope(sessions) as session:
        merge.merge_round(session, store, params, job_id, 1)
    merged = params.get_global(job_id, 1)
    params.delete_job(job_id)  # as if Redis restarted
    train_all(sessions, store, params, job_id, 2)
    assert params.get_shard(job_id, 2, 3) is not None
    restored = params.get_global(job_id, 1)
    assert merged is not None and restored is not None
    assert all(torch.equal(merged[k], restored[k]) for k in merged)


def test_nan_shard_is_excluded_and_recorded(started_job, sessions, store, params) -> None:  # type: ignore[no-untyped-def]
    job_id = started_job(training={"rounds": 2})
    train_all(sessions, store, params, job_id, 1)
    poisoned = params.get_shard(job_id, 1, 2)
    assert poisoned is not None
    bad_state = {k: torch.full_like(v, float("nan")) for k, v in poisoned.state.items()}
    params.put_shard(job_id, 1, type(poisoned)(2, bad_state, poisoned.num_examples, 1.0, 0.1))
    with session_scope(sessions) as session:
        decision = merge.merge_round(session, store, params, job_id, 1)
    assert decision.next == "round"
    with session_scope(sessions) as session:
        (recorded,) = JobRepository(session, SYSTEM).rounds(job_id)
        assert recorded.excluded_shards == [2]
    merged = params.get_global(job_id, 1)
    assert merged is not None and all(torch.isfinite(v).all() for v in merged.values())


def test_all_shards_diverging_fails_the_job(started_job, sessions, store, params) -> None:  # type: ignore[no-untyped-def]
    job_id = started_job(distribution={"shards": 2})
    train_all(sessions, store, params, job_id, 1, shards=2)
    for shard in range(2):
        result = params.get_shard(job_id, 1, shard)
        assert result is not None
        nan_state = {k: torch.full_like(v, float("nan")) for k, v in result.state.items()}
        params.put_shard(job_id, 1, type(result)(shard, nan_state, result.num_examples, 1.0, 0.1))
    with session_scope(sessions) as session:
        assert merge.merge_round(session, store, params, job_id, 1).next == "none"
    job = load_job(sessions, job_id)
    assert job.status == "failed" and job.error_code == "diverged"


def test_finalize_twice_registers_one_model(started_job, sessions, store, params) -> None:  # type: ignore[no-untyped-def]
    job_id = started_job(training={"rounds": 1})
    train_all(sessions, store, params, job_id, 1)
    with session_scope(sessions) as session:
        assert merge.merge_round(session, store, params, job_id, 1).next == "finalize"
    with session_scope(sessions) as session:
        assert finalize.finalize_job(session, store, job_id) is True
    with session_scope(sessions) as session:
        assert finalize.finalize_job(session, store, job_id) is False
    job = load_job(sessions, job_id)
    assert job.status == "succeeded" and job.model_id is not None


def test_same_spec_and_seed_give_identical_parameters(  # type: ignore[no-untyped-def]
    client, ready_dataset, sessions, store, params
) -> None:
    dataset_id = ready_dataset("iris.csv", table_to_csv(iris_table()))
    body = {"dataset_id": dataset_id, "target": "species", "training": {"rounds": 3, "seed": 5}}
    states = []
    for _ in range(2):
        job_id = client.post("/v1/jobs", json=body).json()["id"]
        run_job(sessions, store, params, job_id)
        job = load_job(sessions, job_id)
        states.append((job.best_round, load_checkpoint(store, job_id, job.best_round)))
    (round_a, a), (round_b, b) = states
    assert round_a == round_b and a is not None and b is not None
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_device_choice_follows_the_hardware() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert train.choose_device("auto").type == expected
    assert train.choose_device("cpu").type == "cpu"
    if expected == "cpu":
        with pytest.raises(train.DeviceUnavailable, match="no GPU"):
            train.choose_device("cuda")
    else:
        assert train.choose_device("cuda").type == "cuda"


def test_roc_auc_gate_on_three_classes_fails_at_prepare(  # type: ignore[no-untyped-def]
    client, ready_dataset, sessions, store, params
) -> None:
    dataset_id = ready_dataset("iris.csv", table_to_csv(iris_table()))
    body = {
        "dataset_id": dataset_id,
        "target": "species",
        "deploy_if": {"metric": "roc_auc", "min": 0.9},
    }
    job_id = client.post("/v1/jobs", json=body).json()["id"]
    with session_scope(sessions) as session:
        assert prepare.begin_prepare(session, job_id) == "build"
    with session_scope(sessions) as session:
        assert prepare.build_job_shards(session, store, params, job_id).next == "none"
    job = load_job(sessions, job_id)
    assert job.status == "failed" and job.error_code == "invalid_data"
    assert "roc_auc" in (job.error_message or "")
