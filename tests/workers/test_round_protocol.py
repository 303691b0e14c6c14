"""One round protocol: the worker stages and the in-process trainer run the same round
policy, and its numerics did not move when the policy was drawn out of the stages.

`tests/fixtures/round_parameters.json` holds, for the jobs of `round_fingerprints`,
the SHA-256 of every round's global parameters and the exact losses, as the stages
computed them before the round policy existed (commit 31fd78c), on an Intel CPU.
`round_parameters.AuthenticAMD.json` holds the same jobs on an AMD CPU: MKL takes a
code path of its own there that `MKL_CBWR` does not pin, and the last bits differ
from the first round on (the recorded runs agree to 1e-7). The two files were
compared job by job when the AMD one was recorded: same rounds run, same best round.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from round_fingerprints import JOBS, digest, job_fingerprint, run_named_job

from app.db import session_scope
from app.jobs.learners import policy_for
from app.jobs.part_files import Part, load_part
from app.jobs.plan import ShardPlan
from app.jobs.repository import JobRepository
from app.jobs.spec import JobSpec
from app.tenancy.scope import SYSTEM
from app.training.federated import run_rounds

TESTS = Path(__file__).resolve().parent.parent


def cpu_vendor() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("vendor_id"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def fingerprints_file() -> Path:
    """The record for this CPU's vendor; Intel's is the original."""
    vendor = cpu_vendor()
    if vendor == "GenuineIntel":
        return TESTS / "fixtures" / "round_parameters.json"
    return TESTS / "fixtures" / f"round_parameters.{vendor}.json"


# The last bits of a float32 training run depend on which SIMD kernels the CPU selects
# (AVX-512 or AVX2, Intel or AMD code paths in MKL). These pin one code path that every
# x86-64 CPU runs alike: ATen's baseline kernels, MKL's conditional numerical
# reproducibility mode, one thread, and no GPU.
REPRODUCIBLE_NUMERICS = {
    "ATEN_CPU_CAPABILITY": "default",
    "MKL_CBWR": "COMPATIBLE",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "CUDA_VISIBLE_DEVICES": "",
}


def arrays(part: Part) -> tuple[np.ndarray, np.ndarray]:
    return part.features, part.targets


def test_job_parameters_are_bit_identical_to_before_the_round_policy(tmp_path: Path) -> None:
    found = tmp_path / "found.json"
    child = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(TESTS / "workers" / "round_fingerprints.py"),
        ],
        cwd=TESTS.parent,
        env={**os.environ, **REPRODUCIBLE_NUMERICS, "SHARDTRAIN_FINGERPRINTS_OUT": str(found)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert child.returncode == 0, child.stdout[-4000:] + child.stderr[-4000:]
    record = fingerprints_file()
    assert record.exists(), (
        f"no fingerprints for a {cpu_vendor()} CPU: check {found} against the Intel record "
        f"(same rounds run and best round, losses within 1e-6), then copy it to {record}"
    )
    expected = json.loads(record.read_text())
    assert sorted(expected) == sorted(JOBS)
    for name, recorded in expected.items():
        assert json.loads(found.read_text())[name] == recorded, name


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
@pytest.mark.parametrize("name", sorted(JOBS))
def test_the_in_process_trainer_runs_the_stages_policy(  # type: ignore[no-untyped-def]
    name, client, ready_dataset, sessions, store, params
) -> None:
    """`run_rounds` over a job's own shards gives the stages' parameters, losses and best
    round bit for bit: one policy, whichever driver runs it."""
    job_id = run_named_job(client, ready_dataset, sessions, store, params, name)
    staged = job_fingerprint(sessions, store, job_id)
    with session_scope(sessions) as session:
        job = JobRepository(session, SYSTEM).get(job_id)
        assert job is not None and job.plan is not None and job.task is not None
        plan, spec, task = ShardPlan.from_dict(job.plan), JobSpec.stored(job.spec), job.task
    policy = policy_for(spec, task, plan)
    states: list[str] = []
    result = run_rounds(
        policy,
        [arrays(load_part(store, key)) for key in plan.shard_keys],
        validation=arrays(load_part(store, plan.validation_key)),
        on_round=lambda _round, state: states.append(digest(state)),
    )
    assert result.rounds_run == staged["rounds_run"]
    assert result.best_round == staged["best_round"]
    assert [digest(policy.initial_state()), *states] == staged["checkpoints"]
    assert result.train_losses == staged["train_loss"]
    assert result.history == staged["val_loss"]
    assert np.isfinite(result.history).all()
