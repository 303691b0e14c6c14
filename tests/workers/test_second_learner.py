"""A learner with other round semantics plugs into the stages through `RoundPolicy`
alone: its shard results are sufficient statistics rather than parameters, its merge
grows the previous global state (as a histogram tree learner's does), and the tasks,
the dispatcher and the tables are not touched to run it."""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from inprocess import run_job
from sample_data import iris_table, table_to_csv

from app.db import session_scope
from app.jobs import learners
from app.jobs.checkpoints import load_checkpoint
from app.jobs.repository import JobRepository
from app.tenancy.scope import SYSTEM
from app.training.protocol import (
    Decision,
    Evaluation,
    Progress,
    RoundAggregate,
    RoundPolicy,
    ShardResult,
    StateDict,
)


@dataclass(frozen=True)
class TargetTally(RoundPolicy):
    """Each round adds every shard's target sum and row count to the running totals."""

    rounds: int
    aggregate_reads_previous = True

    def initial_state(self) -> StateDict:
        zero = torch.zeros(1, dtype=torch.float64)
        return {"sum": zero, "count": zero.clone(), "round": torch.zeros(1, dtype=torch.int64)}

    def train_shard(  # type: ignore[no-untyped-def]
        self, round_, shard, start, features, targets, *, device, should_stop=None, rows=None
    ) -> ShardResult:
        # The shard starts from the previous round's merge: the split decisions a tree
        # learner sends to its next level travel the same way.
        assert int(start["round"]) == round_ - 1
        stats = {
            "sum": torch.tensor([float(np.sum(targets, dtype=np.float64))], dtype=torch.float64),
            "count": torch.tensor([float(len(targets))], dtype=torch.float64),
        }
        return ShardResult(shard=shard, state=stats, num_examples=len(targets), loss=0.0)

    def aggregate(
        self, round_: int, previous: StateDict | None, results: Sequence[ShardResult]
    ) -> RoundAggregate:
        assert previous is not None
        state = {key: value.clone() for key, value in previous.items()}
        for result in results:
            state["sum"] += result.state["sum"]
            state["count"] += result.state["count"]
        state["round"] = torch.tensor([round_])
        shards = [result.shard for result in results]
        return RoundAggregate(state=state, train_loss=None, used=shards, excluded=[])

    def evaluate(self, state, features, targets, *, device=None) -> Evaluation | None:  # type: ignore[no-untyped-def]
        if len(targets) == 0:
            return None
        mean = float(state["sum"] / state["count"])
        return Evaluation(loss=float(np.mean((targets - mean) ** 2)), metrics={})

    def decide(self, round_: int, evaluation: Evaluation | None, progress: Progress) -> Decision:
        return Decision(round_, None, finish=round_ >= self.rounds)


@pytest.fixture
def tally_learner(monkeypatch: pytest.MonkeyPatch) -> None:
    def factory(spec, task, plan) -> RoundPolicy:  # type: ignore[no-untyped-def]
        return TargetTally(rounds=spec.training.rounds)

    monkeypatch.setitem(learners.LEARNERS, "logistic_regression", factory)


def run_tally(
    client, ready_dataset, sessions, store, params, shards: int
) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
    dataset_id = ready_dataset("iris.csv", table_to_csv(iris_table()))
    body = {
        "dataset_id": dataset_id,
        "target": "species",
        "distribution": {"shards": shards},
        "training": {"rounds": 3},
    }
    job_id = client.post("/v1/jobs", json=body).json()["id"]
    assert run_job(sessions, store, params, job_id) == [
        "prepare",
        "round",
        "round",
        "round",
        "finalize",
    ]
    with session_scope(sessions) as session:
        job = JobRepository(session, SYSTEM).get(job_id)
        assert job is not None and job.status == "succeeded", job and job.error
        assert [r.round for r in JobRepository(session, SYSTEM).rounds(job_id)] == [1, 2, 3]
        assert job.plan is not None
        training_rows = sum(job.plan["shard_rows"])
    state = load_checkpoint(store, job_id, 3)
    assert state is not None
    assert float(state["count"]) == 3 * training_rows
    return state


def test_a_second_learner_runs_through_the_stages_at_any_shard_count(  # type: ignore[no-untyped-def]
    tally_learner, client, ready_dataset, sessions, store, params
) -> None:
    two = run_tally(client, ready_dataset, sessions, store, params, shards=2)
    five = run_tally(client, ready_dataset, sessions, store, params, shards=5)
    assert two.keys() == five.keys()
    assert all(torch.equal(two[key], five[key]) for key in two)
