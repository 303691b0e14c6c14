"""Sweeps through the SDK (sync and async) and the CLI, against the real app: created from
a typed `SweepSpec` on iris, run to their end in this process (`inprocess.run_sweep`),
read back, waited for, cancelled, refused with the server's `param`."""

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pydantic
import pytest
from inprocess import run_sweep
from rich.console import Console
from sample_data import iris_table, table_to_csv
from sdk_harness import FAST, Served
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner, Result

from app.config import Settings
from app.main import create_app
from app.paramstore import ParamStore
from app.storage import BlobStore
from shardtrain import (
    AsyncClient,
    Choice,
    ConflictError,
    DistributionSpec,
    IntRange,
    JobSpec,
    LogUniform,
    ModelSpec,
    NotFoundError,
    Sweep,
    SweepEvent,
    SweepSpec,
    SweepTrial,
    TrainingSpec,
    Uniform,
    ValidationError,
    ValidationSpec,
)
from shardtrain.cli import app as cli
from shardtrain.cli import exit_codes, render
from shardtrain.cli.context import Settings as CLISettings
from shardtrain.spec import field_path

IRIS_CSV = table_to_csv(iris_table())
UNKNOWN_SWEEP = "swp_0123456789abcdef01234567"
SWEEP_YAML = """\
template:
  dataset_id: {dataset_id}
  target: species
  model:
    type: mlp
    hidden_layers: [8]
  training:
    rounds: 3
    seed: 1
  distribution:
    shards: 2
space:
  training.learning_rate:
    log_uniform: [0.001, 0.3]
  model.hidden_layers:
    choice: [[4], [16]]
metric: accuracy
max_trials: 3
pruner: none
"""


def _spec(dataset_id: str, **changes: Any) -> SweepSpec:
    """Three tiny trials on iris: an MLP, three rounds at most, two shards."""
    fields: dict[str, Any] = {
        "template": JobSpec(
            dataset_id=dataset_id,
            target="species",
            model=ModelSpec(type="mlp", hidden_layers=[8]),
            training=TrainingSpec(rounds=3, seed=1),
            distribution=DistributionSpec(shards=2),
        ),
        "space": {
            "training.learning_rate": LogUniform(log_uniform=(1e-3, 0.3)),
            "model.hidden_layers": Choice(choice=[[4], [16]]),
            "training.l2": Uniform(uniform=(0, 0.01)),
            "training.rounds": IntRange(int=(2, 4), step=2),
        },
        "metric": "accuracy",
        "max_trials": 3,
        "pruner": "none",
        "seed": 0,
    }
    return SweepSpec(**{**fields, **changes})


@pytest.fixture
def dataset_id(ready_dataset: Callable[[str, bytes], str]) -> str:
    return ready_dataset("iris.csv", IRIS_CSV)


@pytest.fixture
def drive(
    sessions: sessionmaker[Session], store: BlobStore, params: ParamStore
) -> Callable[..., list[str]]:
    """Run a created sweep's steps and its trials' jobs to the sweep's end."""
    return lambda sweep_id, **kwargs: run_sweep(sessions, store, params, sweep_id, **kwargs)


@pytest.fixture
def run(served: Served, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    # The CLI's own client would dial a port; this one reaches the app in-process.
    monkeypatch.setattr(CLISettings, "client", lambda self: served.sdk)
    return lambda *args: CliRunner().invoke(cli, list(args))


def test_a_sweep_created_from_a_typed_spec_runs_to_its_best_trial(
    served: Served, dataset_id: str, drive: Callable[..., list[str]]
) -> None:
    sweeps = served.sdk.sweeps
    spec = _spec(dataset_id)
    # Only what was set is sent: the server's defaults fill the rest.
    body = spec.to_request()
    assert body["space"]["training.learning_rate"] == {"log_uniform": [0.001, 0.3]}
    assert "parallelism" not in body and "step" not in body["space"]["model.hidden_layers"]
    assert set(body["template"]) == {"dataset_id", "target", "model", "training", "distribution"}

    created = sweeps.create(spec, idempotency_key="nightly-sweep")
    assert isinstance(created, Sweep)
    assert (created.status, created.trials, created.best_trial) == ("running", [], None)
    assert (created.metric, created.direction) == ("accuracy", "maximize")
    assert created.task == "classification"
    assert created.spec.space == spec.space and created.spec.template == spec.template
    assert created.spec.parallelism == 2 and not created.done
    # The same key answers the sweep the first call made.
    again = sweeps.create(spec.to_request(), idempotency_key="nightly-sweep")
    assert again.id == created.id
    assert [s.idempotency_key for s in served.injector.requests("POST", "/v1/sweeps")] == [
        "nightly-sweep", "nightly-sweep",
    ]  # fmt: skip

    drive(created.id)
    sweep = sweeps.wait(created.id, progress=False, timeout=10, poll_interval=0.01)
    assert (sweep.id, sweep.status, sweep.done) == (created.id, "succeeded", True)
    assert sweep.finished_at is not None and sweep.error is None
    assert [t.number for t in sweep.trials] == [0, 1, 2]
    assert {t.state for t in sweep.trials} == {"done"}
    assert sweep.counts == {"running": 0, "done": 3, "pruned": 0, "failed": 0, "cancelled": 0}
    for trial in sweep.trials:
        assert isinstance(trial, SweepTrial)
        assert 1e-3 <= trial.params["training.learning_rate"] <= 0.3
        assert trial.params["model.hidden_layers"] in ([4], [16])
        assert trial.params["training.rounds"] in (2, 4)
        assert trial.score is not None and trial.score_std is None and trial.fold_scores is None
        assert trial.job_ids == [trial.job_id] and trial.model_id is not None
        assert trial.rounds == len(trial.val_losses) and trial.seconds >= 0
        job = served.sdk.jobs.get(trial.job_id)
        assert job.sweep_id == sweep.id and job.model_id == trial.model_id
        assert job.spec.training.learning_rate == trial.params["training.learning_rate"]
    best = max(sweep.trials, key=lambda t: (t.score, -t.number))
    assert sweep.best_trial is not None
    assert (sweep.best_trial.number, sweep.best_trial.score) == (best.number, best.score)
    assert sweep.best_trial.params == best.params and sweep.best_trial.job_id == best.job_id
    assert sweep.model_id == sweep.best_trial.model_id == best.model_id
    assert sweep.final_job_id is None
    assert served.sdk.models.get(sweep.model_id).status == "deployed"

    assert sweeps.trials(sweep.id) == sweep.trials
    assert sweeps.get(sweep.id) == sweep
    assert [s.id for s in sweeps.list()] == [sweep.id]
    page = sweeps.list_page(limit=1)
    assert ([s.id for s in page.data], page.has_more) == ([sweep.id], False)
    events = list(sweeps.events(sweep.id))
    assert all(isinstance(e, SweepEvent) and e.sweep_id == sweep.id for e in events)
    types = [e.type for e in events]
    assert types[0] == "sweep.created" and types[-1] == "sweep.status"
    assert types.count("trial.started") == types.count("trial.done") == 3
    assert [e.id for e in sweeps.events(sweep.id, after=events[0].id)] == [e.id for e in events[1:]]
    # Followed over server-sent events, the stream ends with the (ended) sweep's last one.
    assert list(sweeps.events(sweep.id, follow=True)) == events
    assert sweeps.trials_chart(sweep.id).startswith(b"\x89PNG\r\n\x1a\n")

    with pytest.raises(ConflictError) as finished:
        sweeps.cancel(sweep.id)
    assert (finished.value.code, finished.value.param) == ("sweep_finished", "id")
    assert sweeps.get(sweep.id).status == "succeeded"


def test_a_cross_validated_sweep_scores_each_trial_by_its_folds(
    served: Served, dataset_id: str, drive: Callable[..., list[str]]
) -> None:
    sweeps = served.sdk.sweeps
    created = sweeps.create(_spec(dataset_id, cv_folds=2, max_trials=2))
    assert created.spec.cv_folds == 2
    drive(created.id)
    sweep = sweeps.get(created.id)
    assert sweep.status == "succeeded", sweep.error
    for trial in sweep.trials:
        assert trial.state == "done" and len(trial.job_ids) == 2 and trial.model_id is None
        assert trial.fold_scores is not None and len(trial.fold_scores) == 2
        assert trial.score == pytest.approx(sum(trial.fold_scores) / 2)
        assert trial.score_std is not None
        folds = [served.sdk.jobs.get(j).spec.validation for j in trial.job_ids]
        assert [(f.cv_folds, f.cv_fold) for f in folds] == [(2, 0), (2, 1)]
    # The best settings are trained once more, on every fold's rows, for the model.
    assert sweep.best_trial is not None and sweep.best_trial.score_std is not None
    assert sweep.final_job_id is not None
    final = served.sdk.jobs.get(sweep.final_job_id)
    assert (final.sweep_id, final.model_id) == (sweep.id, sweep.model_id)
    assert final.spec.validation.cv_folds is None and sweep.model_id is not None
    shown = _text(render.sweep_detail(sweep)[1], 80)
    assert " ± " in shown and "…" not in shown


def test_a_sweep_cancelled_before_it_runs_starts_no_trial_and_cancel_is_idempotent(
    served: Served, dataset_id: str, drive: Callable[..., list[str]]
) -> None:
    sweeps = served.sdk.sweeps
    created = sweeps.create(_spec(dataset_id))
    cancelled = sweeps.cancel(created.id)
    assert (cancelled.id, cancelled.status, cancelled.done) == (created.id, "cancelled", True)
    assert cancelled.finished_at is not None and cancelled.model_id is None
    assert cancelled.trials == [] and cancelled.counts["running"] == 0
    again = sweeps.cancel(created.id)
    assert again == cancelled

    drive(created.id)  # the step finds the sweep ended: nothing starts
    ended = sweeps.wait(created.id, progress=False, timeout=10, poll_interval=0.01)
    assert (ended.status, ended.trials, ended.best_trial) == ("cancelled", [], None)
    assert list(served.sdk.jobs.list()) == []
    assert [e.type for e in sweeps.events(created.id)][-1] == "sweep.status"


def test_cancelling_a_running_sweep_cancels_its_running_trials(
    served: Served, dataset_id: str, drive: Callable[..., list[str]]
) -> None:
    sweeps = served.sdk.sweeps
    created = sweeps.create(_spec(dataset_id, max_trials=4))
    seen: list[Sweep] = []

    def cancel_once_started(kind: str, args: dict[str, Any]) -> None:
        # After the first step has started trial 0 (whose job prepares the shards the
        # others share).
        if kind == "sweep_step" and not seen:
            seen.append(sweeps.get(created.id))
            seen.append(sweeps.cancel(created.id))

    drive(created.id, after_each=cancel_once_started)
    started, cancelled = seen
    assert [t.state for t in started.trials] == ["running"]
    assert cancelled.status == "cancelled" and cancelled.counts["running"] == 0
    ended = sweeps.get(created.id)
    assert [(t.number, t.state) for t in ended.trials] == [(0, "cancelled")]
    assert ended.counts == {"running": 0, "done": 0, "pruned": 0, "failed": 0, "cancelled": 1}
    assert {served.sdk.jobs.get(t.job_id).status for t in ended.trials} == {"cancelled"}
    assert sweeps.cancel(created.id).trials == ended.trials


def test_what_the_server_refuses_raises_with_its_param(served: Served, dataset_id: str) -> None:
    sweeps = served.sdk.sweeps
    # The space may not vary what every trial's shared preparation depends on.
    with pytest.raises(ValidationError) as refused:
        sweeps.create(_spec(dataset_id, space={"training.seed": IntRange(int=(0, 3))}))
    error = refused.value
    assert (error.status, error.code, error.param) == (422, "invalid_sweep", "space.training.seed")
    with pytest.raises(ValidationError) as template:
        sweeps.create(
            _spec(dataset_id).to_request()
            | {"template": {"dataset_id": dataset_id, "target": "species",
                            "validation": ValidationSpec(cv_folds=3, cv_fold=0)}}
        )  # fmt: skip
    assert template.value.param == "template.validation.cv_folds"
    with pytest.raises(NotFoundError) as no_dataset:
        sweeps.create(_spec("ds_0123456789abcdef01234567"))
    assert no_dataset.value.param == "template.dataset_id"
    for read in (sweeps.get, sweeps.trials, sweeps.cancel, sweeps.trials_chart):
        with pytest.raises(NotFoundError) as missing:
            read(UNKNOWN_SWEEP)
        assert (missing.value.code, missing.value.param) == ("not_found", "id")
        assert UNKNOWN_SWEEP in missing.value.message
    with pytest.raises(NotFoundError):
        list(sweeps.events(UNKNOWN_SWEEP))
    assert list(sweeps.list()) == []


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        ({"space": {"training.l2": {"log_uniform": [0, 1]}}}, "space.training.l2"),
        ({"space": {"training.l2": {"uniform": ["0", 1]}}}, "space.training.l2.uniform.0"),
        ({"space": {"training.rounds": {"int": [2, 9], "step": 2}}}, "space.training.rounds"),
        ({"space": {"model.hidden_layers": {"choice": [[4]]}}}, "space.model.hidden_layers.choice"),
        ({"space": {"training.l2": {"between": [0, 1]}}}, "space.training.l2"),
        ({"space": {}}, "space"),
        ({"metric": "precision"}, "metric"),
        ({"max_trials": 0}, "max_trials"),
        ({"cv_folds": 11}, "cv_folds"),
        ({"template": {"dataset_id": "ds_1", "target": "y", "model": {"type": "mlp",
                       "dropout": 1.5}}}, "template.model.dropout"),
        ({"template": {"dataset_id": "ds_1", "target": "y",
                       "validation": {"cv_folds": 3}}}, "template.validation"),
    ],
)  # fmt: skip
def test_a_malformed_sweep_fails_before_any_request(
    served: Served, changes: dict[str, Any], where: str
) -> None:
    body = {**_spec("ds_1").to_request(), **changes}
    with pytest.raises(pydantic.ValidationError) as caught:
        served.sdk.sweeps.create(body)
    assert field_path(caught.value.errors()[0]["loc"]) == where
    assert served.injector.requests("POST", "/v1/sweeps") == []


def test_async_sweeps_create_get_wait_and_cancel(
    settings: Settings, api_key: str, dataset_id: str, drive: Callable[..., list[str]]
) -> None:
    async def scenario() -> dict[str, Any]:
        transport = httpx.ASGITransport(app=create_app(settings))
        async with httpx.AsyncClient(transport=transport) as http:
            client = AsyncClient(api_key, "http://sdk.test", http_client=http, retry=FAST)
            created = await client.sweeps.create(
                template=_spec(dataset_id).template, space=_spec(dataset_id).space,
                metric="accuracy", max_trials=3, pruner="none", idempotency_key="async-sweep",
            )  # fmt: skip
            again = await client.sweeps.create(
                _spec(dataset_id, max_trials=3, pruner="none"), idempotency_key="async-sweep"
            )
            drive(created.id)
            ended = await client.sweeps.wait(
                created.id, progress=False, timeout=10, poll_interval=0.01
            )
            other = await client.sweeps.create(_spec(dataset_id))
            cancelled = await client.sweeps.cancel(other.id)
            with pytest.raises(NotFoundError) as missing:
                await client.sweeps.get(UNKNOWN_SWEEP)
            with pytest.raises(ValidationError) as refused:
                await client.sweeps.create(
                    _spec(dataset_id, space={"distribution.shards": IntRange(int=(1, 2))})
                )
            return {
                "created": (created.status, again.id == created.id),
                "ended": (ended.status, len(ended.trials), ended.model_id is not None),
                "get": (await client.sweeps.get(created.id)) == ended,
                "trials": (await client.sweeps.trials(created.id)) == ended.trials,
                "listed": sorted([s.id async for s in client.sweeps.list(limit=1)]),
                "events": [e.type async for e in client.sweeps.events(created.id)][-1],
                "chart": (await client.sweeps.trials_chart(created.id))[:4],
                "cancelled": (cancelled.status, (await client.sweeps.cancel(other.id)).status),
                "missing": missing.value.param,
                "refused": refused.value.param,
                "ids": (created.id, other.id),
            }

    result = asyncio.run(scenario())
    assert result.pop("listed") == sorted(result.pop("ids"))
    assert result == {
        "created": ("running", True),
        "ended": ("succeeded", 3, True),
        "get": True,
        "trials": True,
        "events": "sweep.status",
        "chart": b"\x89PNG",
        "cancelled": ("cancelled", "cancelled"),
        "missing": "id",
        "refused": "space.distribution.shards",
    }


def test_cli_sweeps_create_trials_show_list_wait_and_cancel(
    run: Callable[..., Result], dataset_id: str, drive: Callable[..., list[str]], tmp_path: Path
) -> None:
    spec = tmp_path / "sweep.yaml"
    spec.write_text(SWEEP_YAML.format(dataset_id="ds_replace_me"))
    created = run("sweeps", "create", "--spec", str(spec), "--dataset", dataset_id, "-o", "json")
    assert created.exit_code == 0, created.output
    sweep = json.loads(created.stdout)
    assert (sweep["status"], sweep["trials"]) == ("running", [])
    assert sweep["spec"]["template"]["dataset_id"] == dataset_id
    sweep_id = sweep["id"]
    drive(sweep_id)

    trials = run("sweeps", "trials", sweep_id)
    assert trials.exit_code == 0, trials.output
    lines = trials.stdout.splitlines()
    assert lines[0].split() == ["trial", "state", "score", "params", "seconds"]
    rows = [line.split() for line in lines[1:] if line[:1].isdigit()]
    assert [r[:2] for r in rows] == [["0", "done"], ["1", "done"], ["2", "done"]]
    assert all(r[3].startswith("training.learning_rate=") for r in rows)
    assert trials.stdout.count("model.hidden_layers=[") == 3
    as_json = json.loads(run("sweeps", "trials", sweep_id, "-o", "json").stdout)
    assert [t["number"] for t in as_json] == [0, 1, 2]
    assert run("sweeps", "trials", sweep_id, "-o", "id").exit_code == exit_codes.USAGE

    shown = json.loads(run("sweeps", "show", sweep_id, "-o", "json").stdout)
    assert shown["status"] == "succeeded" and shown["model_id"] is not None
    got = run("sweeps", "get", sweep_id, "-o", "json")  # the SDK's name for `show`
    assert got.exit_code == 0 and json.loads(got.stdout) == shown
    table = run("sweeps", "show", sweep_id)
    assert table.exit_code == 0, table.output
    best = shown["best_trial"]
    assert f"trial {best['number']}: accuracy {best['score']:.4f}" in table.stdout
    assert shown["model_id"] in table.stdout and "3/3 ended (3 done)" in table.stdout
    trial_job = run("jobs", "show", as_json[0]["job_id"])
    assert trial_job.exit_code == 0 and f"│ sweep    │ {sweep_id}" in trial_job.stdout
    listed = run("sweeps", "list", "-o", "id")
    assert (listed.exit_code, listed.stdout) == (0, f"{sweep_id}\n")
    assert sweep_id in run("sweeps", "list").stdout

    waited = run("sweeps", "wait", sweep_id, "--no-progress")
    assert waited.exit_code == 0, waited.output
    # It ends with the best trial and the model (the line folded at 80 columns).
    last = " ".join(waited.stdout.split()).rsplit(f"{sweep_id} succeeded: ", 1)[1]
    assert last.startswith(f"best trial {best['number']}: accuracy {best['score']:.4f}")
    assert last.endswith(f"; model {shown['model_id']}")
    live = run("sweeps", "wait", sweep_id, "--progress", "-o", "json")  # the live view on stderr
    assert live.exit_code == 0 and json.loads(live.stdout) == shown
    events = run("sweeps", "events", sweep_id, "-o", "json")
    types = [json.loads(line)["type"] for line in events.stdout.splitlines()]
    assert (types[0], types[-1]) == ("sweep.created", "sweep.status")
    followed = run("sweeps", "events", sweep_id, "--follow")
    assert followed.exit_code == 0 and len(followed.stdout.splitlines()) == len(types)

    # --wait on a sweep that is still running: the id on stderr, then the timeout.
    timed_out = run("sweeps", "create", "--spec", str(spec), "--dataset", dataset_id,
                    "--wait", "--timeout", "0", "--no-progress")  # fmt: skip
    assert timed_out.exit_code == exit_codes.TIMEOUT, timed_out.output
    assert timed_out.stdout == "" and "created swp_" in timed_out.stderr
    other = timed_out.stderr.split("created ")[1].split()[0]
    cancelled = run("sweeps", "cancel", other, "-o", "json")
    assert cancelled.exit_code == 0 and json.loads(cancelled.stdout)["status"] == "cancelled"
    assert run("sweeps", "cancel", other).exit_code == 0  # idempotent
    unsuccessful = run("sweeps", "wait", other, "--no-progress")
    assert unsuccessful.exit_code == exit_codes.UNSUCCESSFUL, unsuccessful.output
    assert f"{other} cancelled: no trial done" in unsuccessful.stdout
    finished = run("sweeps", "cancel", sweep_id)
    assert finished.exit_code == exit_codes.CONFLICT and "409 sweep_finished" in finished.stderr
    missing = run("sweeps", "show", UNKNOWN_SWEEP)
    assert missing.exit_code == exit_codes.NOT_FOUND and "(param: id)" in missing.stderr


def test_cli_sweeps_create_refuses_a_bad_spec_naming_the_field(
    run: Callable[..., Result], dataset_id: str, tmp_path: Path
) -> None:
    local = tmp_path / "local.yaml"
    local.write_text(SWEEP_YAML.format(dataset_id=dataset_id) + "sampler: grid\n")
    refused = run("sweeps", "create", "--spec", str(local))
    assert refused.exit_code == exit_codes.INVALID, refused.output
    assert "invalid SweepSpec: sampler:" in refused.stderr
    bad = tmp_path / "bad.json"
    spec = _spec(dataset_id, space={"training.seed": {"int": [0, 3]}}).to_request()
    bad.write_text(json.dumps(spec))
    server = run("sweeps", "create", "--spec", str(bad))
    assert server.exit_code == exit_codes.INVALID, server.output
    assert "422 invalid_sweep" in server.stderr and "(param: space.training.seed)" in server.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("- a list\n")
    usage = run("sweeps", "create", "--spec", str(broken))
    assert usage.exit_code == exit_codes.USAGE and "(the sweep spec)" in usage.output


def _text(renderable: Any, width: int) -> str:
    console = Console(width=width, record=True, markup=False)
    with console.capture() as captured:
        console.print(renderable)
    return captured.get()


def test_the_trials_table_keeps_state_score_and_params_whole_at_80_columns() -> None:
    trials = [
        SweepTrial(
            number=n, state=state, score=0.9667 - n / 100, score_std=0.0123, fold_scores=[0.9] * 3,
            job_id=f"job_{n:024x}", job_ids=[f"job_{n:024x}"] * 3, rounds=4,
            val_losses=[0.5, 0.3], seconds=12.5,
            params={"training.learning_rate": 0.000123456, "model.hidden_layers": [64, 64],
                    "training.optimizer": "momentum"},
        )
        for n, state in enumerate(["done", "pruned", "cancelled"])
    ]  # fmt: skip
    text = _text(render.trials_table(trials), 80)
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    for trial in trials:
        row = next(line for line in text.splitlines() if line.startswith(f"{trial.number} "))
        assert trial.state in row and f"{trial.score:.4f} ± 0.0123" in row and "12.50" in row
    for param in ("training.learning_rate=0.0001235", "model.hidden_layers=[64,64]",
                  "training.optimizer=momentum"):  # fmt: skip
        assert text.count(param) == 3, param


@pytest.mark.parametrize("width", [80, 130, 200])
def test_sweeps_list_keeps_status_trials_best_and_date_whole(width: int) -> None:
    spec = _spec("ds_" + "a" * 24, max_trials=500)
    best = {"number": 7, "params": {}, "score": 0.9667, "score_std": 0.0123, "job_id": "job_1"}
    sweeps = [
        Sweep(
            id=f"swp_{i:024x}", status=status, spec=spec, task="classification",
            metric="log_loss", direction="minimize", trials=[], counts={},
            best_trial=best if status != "running" else None,
            model_id=f"mdl_{i:024x}" if status == "succeeded" else None, created_at=1767225600,
        )
        for i, status in enumerate(["succeeded", "cancelled", "running", "failed"])
    ]  # fmt: skip
    text = _text(render.sweep_table(sweeps, width), width)
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= width
    for sweep in sweeps:
        row = next(line for line in text.splitlines() if line.startswith(sweep.id))
        assert sweep.status in row and "0/500" in row
        assert render.when(sweep.created_at, seconds=False) in row
        if sweep.best_trial is not None:
            assert "0.9667" in row
        if width >= render.SWEEPS_WIDE:
            assert "log_loss" in row and render.when(sweep.created_at) in row
            assert (sweep.model_id or "") in row and ("± 0.0123" in row) == (
                sweep.best_trial is not None
            )


def test_the_live_view_keeps_the_latest_trials_that_fit() -> None:
    trials = [
        SweepTrial(
            number=n, state="done" if n < 9 else "running", score=0.9 if n < 9 else None,
            job_id=f"job_{n}", job_ids=[f"job_{n}"], rounds=2, val_losses=[0.5, 0.4],
            seconds=1.0, params={"training.learning_rate": 0.01, "training.l2": 0.001},
        )
        for n in range(10)
    ]  # fmt: skip
    sweep = Sweep(
        id="swp_1", status="running", spec=_spec("ds_1", max_trials=12), task="classification",
        metric="accuracy", direction="maximize", trials=trials, counts={}, created_at=1,
        best_trial={"number": 3, "params": {}, "score": 0.9, "job_id": "job_3"},
    )  # fmt: skip
    text = _text(render.sweep_live(sweep, height=12), 80)
    lines = text.splitlines()
    assert (
        lines[0] == "swp_1 running  9/12 trials  best trial 3: accuracy 0.9000  (the last 4 shown)"
    )
    assert [line.split()[0] for line in lines[2:] if line[:1].isdigit()] == ["6", "7", "8", "9"]
    assert len(lines) <= 12
    everything = _text(render.sweep_live(sweep), 80)
    assert "shown" not in everything and everything.count("training.l2=0.001") == 10
