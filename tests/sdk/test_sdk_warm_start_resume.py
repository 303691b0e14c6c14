"""Warm starts (`init_from`, `Job.init_model_id`) and `jobs.resume` through the SDK (sync
and async) and the CLI, against the real app; jobs run in this process (tests/inprocess.py)
and fail the way a lost worker fails them."""

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pydantic
import pytest
from fault_injection import Fault
from inprocess import continue_job, run_job
from sample_data import iris_table, table_to_csv
from sdk_harness import FAST, Served
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner, Result

from app.config import Settings
from app.db import session_scope
from app.jobs import spec as server_spec
from app.jobs.lifecycle import fail
from app.jobs.repository import JobRepository
from app.main import create_app
from app.paramstore import ParamStore
from app.storage import BlobStore
from app.tenancy.scope import SYSTEM
from shardtrain import (
    AsyncClient,
    ConflictError,
    InitFrom,
    Job,
    JobSpec,
    NotFoundError,
    ValidationError,
)
from shardtrain.cli import app as cli
from shardtrain.cli import exit_codes
from shardtrain.cli.context import Settings as CLISettings

TrainJob = Callable[..., dict[str, Any]]
IRIS_CSV = table_to_csv(iris_table())
SPEC: dict[str, Any] = {
    "target": "species",
    "distribution": {"shards": 2},
    "training": {"rounds": 3, "learning_rate": 0.1, "seed": 5, "early_stopping": None},
}
UNKNOWN_JOB = "job_0123456789abcdef01234567"


@pytest.fixture
def churn(train_job: TrainJob) -> dict[str, Any]:
    """Two succeeded versions of `churn` on iris: the dataset and each version's model."""
    first = train_job("iris.csv", IRIS_CSV, **SPEC, model_name="churn")
    second = train_job(
        "iris.csv", IRIS_CSV, **{**SPEC, "training": {**SPEC["training"], "seed": 9}},
        model_name="churn",
    )  # fmt: skip
    assert [first["status"], second["status"]] == ["succeeded", "succeeded"]
    assert first["model_id"] != second["model_id"]
    return {
        "dataset_id": second["spec"]["dataset_id"],
        "v1": first["model_id"],
        "v2": second["model_id"],
        "job": second["id"],
    }


@pytest.fixture
def failed_job(
    served: Served,
    ready_dataset: Callable[[str, bytes], str],
    sessions: sessionmaker[Session],
    store: BlobStore,
    params: ParamStore,
) -> Callable[[], str]:
    """A job created through the SDK that merged round 1, then failed (worker_lost)."""
    dataset_id = ready_dataset("iris.csv", IRIS_CSV)

    def make() -> str:
        job_id = served.sdk.jobs.create(dataset_id=dataset_id, **SPEC).id
        run_job(sessions, store, params, job_id, stop_before_round=2)
        with session_scope(sessions) as session:
            job = JobRepository(session, SYSTEM).get(job_id, for_update=True)
            assert job is not None
            fail(job, "worker_lost", "no progress on stage 'round' after 3 attempt(s)")
        return job_id

    return make


@pytest.fixture
def run(served: Served, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    # The CLI's own client would dial a port; this one reaches the app in-process.
    monkeypatch.setattr(CLISettings, "client", lambda self: served.sdk)
    return lambda *args: CliRunner().invoke(cli, list(args))


def test_a_warm_start_by_id_or_name_at_version_reads_back_its_init_model(
    served: Served,
    churn: dict[str, Any],
    sessions: sessionmaker[Session],
    store: BlobStore,
    params: ParamStore,
) -> None:
    jobs, dataset_id = served.sdk.jobs, churn["dataset_id"]
    by_id = jobs.create(dataset_id=dataset_id, **SPEC, init_from={"model": churn["v2"]})
    assert by_id.init_model_id == churn["v2"]
    assert by_id.spec.init_from == InitFrom(model=churn["v2"])
    spec = JobSpec(dataset_id=dataset_id, target="species", init_from=InitFrom(model="churn@1"))
    assert spec.to_request()["init_from"] == {"model": "churn@1"}
    by_version = jobs.create(spec)
    assert by_version.init_model_id == churn["v1"]
    assert by_version.spec.init_from == InitFrom(model="churn@1")
    warm_starts = [e for e in jobs.events(by_version.id) if e.type == "job.warm_start"]
    assert [e.data["model_id"] for e in warm_starts] == [churn["v1"]]
    cold = jobs.create(dataset_id=dataset_id, **SPEC)
    assert cold.init_model_id is None and cold.spec.init_from is None

    run_job(sessions, store, params, by_version.id)
    done = jobs.get(by_version.id)
    assert (done.status, done.init_model_id) == ("succeeded", churn["v1"])
    assert done.model_id not in (None, churn["v1"], churn["v2"])


def test_a_warm_start_the_server_refuses_names_its_param(
    served: Served, churn: dict[str, Any]
) -> None:
    jobs, dataset_id = served.sdk.jobs, churn["dataset_id"]
    mismatches: list[tuple[dict[str, Any], str]] = [
        ({"model": {"type": "mlp"}}, "model.type"),
        ({"preprocessing": {"standardize": False}}, "preprocessing.standardize"),
        ({"target": "sepal_length", "model": {"type": "linear_regression"}}, "task"),
    ]
    for fields, param in mismatches:
        with pytest.raises(ValidationError) as refused:
            jobs.create(dataset_id=dataset_id, **{**SPEC, **fields}, init_from={"model": "churn@2"})
        error = refused.value
        assert (error.status, error.code, error.param) == (422, "invalid_spec", param), fields
        assert churn["v2"] in error.message
    for reference in ("churn@9", "churn@staging", "nope@1", "mdl_0123456789abcdef01234567"):
        with pytest.raises(NotFoundError) as missing:
            jobs.create(dataset_id=dataset_id, **SPEC, init_from={"model": reference})
        assert missing.value.param == "init_from.model", reference
    assert len(list(jobs.list())) == 2  # churn's two: no refused job was made


@pytest.mark.parametrize(
    "reference",
    [
        "mdl_8ce20bd4da5b380226a1f45b", "churn@champion", "churn@3", "a.b-c_d@staging-2",
        "churn", "churn@0", "churn@03", "churn@-1", "mdl_XYZ", "mdl_", "@champion",
        "churn@1staging", "_churn@1", "churn@champion@1", "c" * 64 + "@1", "c" * 65 + "@1",
        "churn@" + "s" * 64, "churn@" + "s" * 65, "churn@" + "9" * 10, "churn@" + "9" * 11,
        "mdl_" + "a" * 36, "mdl_" + "a" * 37,
    ],
)  # fmt: skip
def test_init_from_accepts_what_the_server_accepts(reference: str) -> None:
    def accepts(model: type[pydantic.BaseModel]) -> bool:
        try:
            model.model_validate({"model": reference})
        except pydantic.ValidationError:
            return False
        return True

    assert accepts(InitFrom) == accepts(server_spec.InitFrom)


def test_a_malformed_warm_start_fails_before_any_request(served: Served) -> None:
    assert InitFrom(model="churn@champion").model == "churn@champion"
    for init_from in (
        {"model": "churn"},  # neither an id nor name@alias / name@version
        {"model": "churn@0"},
        {"model": "churn@1", "version": 2},  # a misspelt field
        "churn@1",  # no string shortcut: the spec's objects are objects
        {"model": 3},
    ):
        with pytest.raises(pydantic.ValidationError) as caught:
            served.sdk.jobs.create(dataset_id="ds_x", target="y", init_from=init_from)
        assert caught.value.errors()[0]["loc"][0] == "init_from", init_from
    with pytest.raises(pydantic.ValidationError, match="at most 140"):
        InitFrom(model="mdl_" + "a" * 137)
    assert served.injector.requests("POST", "/v1/jobs") == []


def test_resume_runs_a_failed_job_on_and_wait_follows_it_to_the_end(
    served: Served,
    failed_job: Callable[[], str],
    sessions: sessionmaker[Session],
    store: BlobStore,
    params: ParamStore,
) -> None:
    jobs = served.sdk.jobs
    job_id = failed_job()
    failed = jobs.get(job_id)
    assert failed.status == "failed" and failed.error is not None
    assert failed.error.code == "worker_lost"

    resumed = jobs.resume(job_id)
    assert isinstance(resumed, Job)
    assert (resumed.id, resumed.status, resumed.error) == (job_id, "running", None)
    assert (resumed.finished_at, resumed.progress.round) == (None, 1)
    assert len(served.injector.requests("POST", f"/v1/jobs/{job_id}/resume")) == 1
    # Idempotent, as cancel is: resuming the running job changes nothing.
    again = jobs.resume(job_id)
    assert (again.id, again.status, again.progress.round) == (job_id, "running", 1)

    continue_job(sessions, store, params, job_id)
    ended = jobs.wait(job_id, progress=False, timeout=10, poll_interval=0.01)
    assert (ended.id, ended.status) == (job_id, "succeeded") and ended.model_id is not None
    assert [r.round for r in jobs.metrics(job_id)] == [1, 2, 3]
    resumed_events = [e for e in jobs.events(job_id) if e.type == "job.resumed"]
    assert [(e.data["previous"], e.data["round"]) for e in resumed_events] == [("failed", 1)]
    assert len(list(jobs.list())) == 1  # the same job: resume made no new one


def test_what_cannot_be_resumed_raises_conflict_job_not_resumable(
    served: Served, churn: dict[str, Any], sessions: sessionmaker[Session]
) -> None:
    jobs = served.sdk.jobs
    queued = jobs.create(dataset_id=churn["dataset_id"], **SPEC)
    early = jobs.create(dataset_id=churn["dataset_id"], **SPEC)
    with session_scope(sessions) as session:
        job = JobRepository(session, SYSTEM).get(early.id, for_update=True)
        assert job is not None
        fail(job, "worker_lost", "lost in prepare")  # before its shards were written
    refusals = [
        (churn["job"], "it is succeeded"),
        (early.id, "before its shards were written"),
    ]
    for job_id, why in refusals:
        with pytest.raises(ConflictError) as refused:
            jobs.resume(job_id)
        error = refused.value
        assert (error.status, error.code, error.param) == (409, "job_not_resumable", "id")
        assert why in error.message
        # Not retried: only a 409 `conflict` is.
        assert len(served.injector.requests("POST", f"/v1/jobs/{job_id}/resume")) == 1
    assert jobs.get(churn["job"]).status == "succeeded"
    # A queued job is answered unchanged: resume is idempotent, as cancel is.
    assert jobs.resume(queued.id).status == jobs.get(queued.id).status == "queued"
    with pytest.raises(NotFoundError) as missing:
        jobs.resume(UNKNOWN_JOB)
    assert (missing.value.code, missing.value.param) == ("not_found", "id")


def test_a_resume_whose_answer_was_lost_is_retried_into_the_running_job(
    served: Served, failed_job: Callable[[], str]
) -> None:
    """Resume is idempotent: the retry finds the job running and answers it."""
    job_id = failed_job()
    path = f"/v1/jobs/{job_id}/resume"
    served.injector.faults.append(Fault("POST", path, 503, times=1, when="after"))
    retried = served.sdk.jobs.resume(job_id)
    assert (retried.id, retried.status) == (job_id, "running")
    assert [s.answered for s in served.injector.requests("POST", path)] == [503, 200]


def test_async_warm_start_and_resume(
    settings: Settings, api_key: str, churn: dict[str, Any], failed_job: Callable[[], str]
) -> None:
    job_id = failed_job()

    async def scenario() -> dict[str, Any]:
        transport = httpx.ASGITransport(app=create_app(settings))
        async with httpx.AsyncClient(transport=transport) as http:
            client = AsyncClient(api_key, "http://sdk.test", http_client=http, retry=FAST)
            warm = await client.jobs.create(
                dataset_id=churn["dataset_id"], **SPEC, init_from=InitFrom(model="churn@2")
            )
            with pytest.raises(ValidationError) as mismatch:
                await client.jobs.create(
                    dataset_id=churn["dataset_id"], **{**SPEC, "model": {"type": "mlp"}},
                    init_from={"model": churn["v1"]},
                )  # fmt: skip
            resumed = await client.jobs.resume(job_id)
            with pytest.raises(ConflictError) as succeeded:
                await client.jobs.resume(churn["job"])
            with pytest.raises(NotFoundError) as missing:
                await client.jobs.resume(UNKNOWN_JOB)
            return {
                "init": (warm.init_model_id, (await client.jobs.get(warm.id)).init_model_id),
                "mismatch": (mismatch.value.code, mismatch.value.param),
                "resumed": (resumed.id, resumed.status, resumed.error, resumed.progress.round),
                "succeeded": (succeeded.value.code, "it is succeeded" in str(succeeded.value)),
                "missing": missing.value.param,
            }

    assert asyncio.run(scenario()) == {
        "init": (churn["v2"], churn["v2"]),
        "mismatch": ("invalid_spec", "model.type"),
        "resumed": (job_id, "running", None, 1),
        "succeeded": ("job_not_resumable", True),
        "missing": "id",
    }


def test_cli_jobs_resume_prints_the_job_and_exits_5_when_it_cannot(
    run: Callable[..., Result], failed_job: Callable[[], str], churn: dict[str, Any]
) -> None:
    job_id, other_id, third_id = failed_job(), failed_job(), failed_job()
    resumed = run("jobs", "resume", job_id, "-o", "json")
    assert resumed.exit_code == 0, resumed.output
    job = json.loads(resumed.stdout)
    assert (job["id"], job["status"], job["error"]) == (job_id, "running", None)
    assert job["progress"]["round"] == 1

    again = run("jobs", "resume", job_id, "-o", "json")  # now running: unchanged
    assert again.exit_code == 0 and json.loads(again.stdout)["status"] == "running"
    for refused_id in (churn["job"],):  # succeeded
        refused = run("jobs", "resume", refused_id, "-o", "json")
        assert refused.exit_code == exit_codes.CONFLICT, refused.output
        assert refused.stdout == ""
        assert f"409 job_not_resumable: Job {refused_id} cannot be resumed" in refused.stderr
    missing = run("jobs", "resume", UNKNOWN_JOB)
    assert missing.exit_code == exit_codes.NOT_FOUND, missing.output

    waited = run("jobs", "resume", other_id, "--wait", "--timeout", "0", "--no-progress")
    assert waited.exit_code == exit_codes.TIMEOUT, waited.output
    assert f"resumed {other_id} from round 1" in waited.stderr
    assert waited.stdout == ""
    shown = json.loads(run("jobs", "show", other_id, "-o", "json").stdout)
    assert shown["status"] == "running"
    by_id = run("jobs", "resume", third_id, "-o", "id")
    assert (by_id.exit_code, by_id.stdout) == (0, f"{third_id}\n")
    table = run("jobs", "resume", churn["job"])
    assert table.exit_code == exit_codes.CONFLICT and table.stdout == ""


def test_cli_jobs_create_reads_init_from_in_the_spec_file(
    run: Callable[..., Result], churn: dict[str, Any], tmp_path: Path
) -> None:
    spec = tmp_path / "warm.yaml"
    spec.write_text(
        f"dataset_id: {churn['dataset_id']}\ntarget: species\ninit_from:\n  model: churn@1\n"
    )
    created = run("jobs", "create", "--spec", str(spec), "-o", "json")
    assert created.exit_code == 0, created.output
    job = json.loads(created.stdout)
    assert job["init_model_id"] == churn["v1"]
    assert job["spec"]["init_from"] == {"model": "churn@1"}
    shown = run("jobs", "show", job["id"])
    assert shown.exit_code == 0, shown.output
    row = next(line for line in shown.stdout.splitlines() if "init from" in line)
    assert churn["v1"] in row and "churn@1" in row
    cold = run("jobs", "show", churn["job"])
    assert cold.exit_code == 0 and "init from" not in cold.stdout

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"dataset_id": churn["dataset_id"], "target": "species",
                               "init_from": {"model": "churn"}}))  # fmt: skip
    refused = run("jobs", "create", "--spec", str(bad))
    assert refused.exit_code == exit_codes.INVALID, refused.output
    assert "init_from.model" in refused.stderr
    mismatch = tmp_path / "mismatch.yaml"
    mismatch.write_text(spec.read_text() + "model:\n  type: mlp\n")
    refused = run("jobs", "create", "--spec", str(mismatch))
    assert refused.exit_code == exit_codes.INVALID, refused.output
    assert "422 invalid_spec" in refused.stderr and "(param: model.type)" in refused.stderr
