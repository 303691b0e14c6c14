"""The SDK against the live system (uvicorn, a prefork Celery worker, beat, PostgreSQL,
Redis): upload, train with a typed spec, follow events over SSE, wait, predict, download."""

import asyncio
import csv
import hashlib
import json
import struct
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dbsetup import issue_key
from e2e_system import System
from sample_data import iris_table, table_to_csv

import shardtrain.progress
from shardtrain import (
    AsyncClient,
    Client,
    DistributionSpec,
    JobSpec,
    ModelSpec,
    NotFoundError,
    TrainingSpec,
    ValidationSpec,
)

pytestmark = pytest.mark.e2e

ROUNDS = 4


def api_key(system: System) -> str:
    """A tenant of these tests' own, so other e2e tests' unfinished jobs never count
    against its quotas and its lists hold only what these tests made."""
    return issue_key(system.processes.env["SHARDTRAIN_DATABASE_URL"], "sdk-e2e")


@pytest.fixture
def sdk(system: System) -> Client:
    with Client(api_key(system), system.base_url) as client:
        yield client


def iris_spec(dataset_id: str) -> JobSpec:
    return JobSpec(
        dataset_id=dataset_id,
        target="species",
        model=ModelSpec(type="logistic_regression"),
        training=TrainingSpec(
            rounds=ROUNDS, local_epochs=5, batch_size=16, learning_rate=0.1, early_stopping=None
        ),
        distribution=DistributionSpec(shards=2),
        validation=ValidationSpec(holdout_fraction=0.2, validation_fraction=0.1),
    )


def test_upload_train_follow_wait_predict_download(
    sdk: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "iris.csv"
    path.write_bytes(table_to_csv(iris_table()))

    uploaded = sdk.datasets.upload(path, progress=True)
    assert uploaded.status == "processing"
    assert uploaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert "upload iris.csv" in capsys.readouterr().err  # the rich bar, on stderr
    dataset = sdk.datasets.wait(uploaded.id, timeout=120)
    assert dataset.status == "ready" and dataset.rows == 150
    assert dataset.columns is not None
    assert [c.name for c in dataset.columns][-1] == "species"
    preview = sdk.datasets.preview(dataset.id, limit=3)
    assert len(preview.data) == 3 and preview.has_more

    job = sdk.jobs.create(iris_spec(dataset.id))
    assert job.status == "queued"
    assert job.spec.training.rounds == ROUNDS

    # Followed live from the start: the stream ends by itself when the job does.
    followed = list(sdk.jobs.events(job.id, follow=True))
    types = [e.type for e in followed]
    assert types[0] == "job.created"
    assert types.count("round.completed") == ROUNDS
    assert followed[-1].type == "job.status" and followed[-1].data["status"] == "succeeded"
    assert len({e.id for e in followed}) == len(followed)
    assert [e.id for e in sdk.jobs.events(job.id)] == [e.id for e in followed]
    # Resuming after the second event (sent as Last-Event-ID) gives only what followed it.
    resumed = list(sdk.jobs.events(job.id, follow=True, after=followed[1].id))
    assert [e.id for e in resumed] == [e.id for e in followed[2:]]

    finished = sdk.jobs.wait(job.id, progress=True, timeout=120)
    assert "rounds" in capsys.readouterr().err
    assert finished.status == "succeeded"
    assert finished.progress.round == ROUNDS
    assert finished.model_id is not None
    rounds = sdk.jobs.metrics(job.id)
    assert [r.round for r in rounds] == list(range(1, ROUNDS + 1))
    assert all(r.train_loss is not None and r.val_loss is not None for r in rounds)

    model = sdk.models.get(finished.model_id)
    assert model.status == "deployed"  # no deploy_if gate
    assert model.classes == ["setosa", "versicolor", "virginica"]
    assert [m.id for m in sdk.models.list(job_id=job.id)] == [model.id]
    records = [
        {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
        {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3},
    ]
    prediction = sdk.models.predict(model.id, records)
    assert prediction.predictions == ["setosa", "virginica"]
    assert prediction.probabilities is not None
    assert all(abs(sum(p.values()) - 1) < 1e-4 for p in prediction.probabilities)
    table = sdk.models.predict_table(model.id, pa.Table.from_pylist(records))
    assert table.column("prediction").to_pylist() == prediction.predictions
    assert table.column("probability_virginica").to_pylist() == pytest.approx(
        [p["virginica"] for p in prediction.probabilities]
    )

    artifact = sdk.models.download(model.id, tmp_path)
    assert artifact == tmp_path / f"{model.id}.safetensors"
    raw = artifact.read_bytes()
    (header_length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_length])
    assert "__metadata__" in header
    assert not list(tmp_path.glob("*.part"))

    batch = sdk.models.batch_predict(model.id, dataset.id, idempotency_key=f"bp-{dataset.id}")
    assert (batch.model_id, batch.dataset_id) == (model.id, dataset.id)
    done = sdk.models.wait_batch_prediction(model.id, batch.id, timeout=120)
    assert (done.id, done.status, done.rows) == (batch.id, "succeeded", 150), done.error
    assert sdk.models.get_batch_prediction(model.id, batch.id) == done
    output = sdk.models.download_batch_output(model.id, batch.id, tmp_path)
    assert output == tmp_path / f"{batch.id}.parquet"
    predicted = pq.read_table(output)
    assert predicted.column("row_id").to_pylist() == list(range(150))
    species = iris_table().column("species").to_pylist()
    hits = sum(
        p == s for p, s in zip(predicted.column("prediction").to_pylist(), species, strict=True)
    )
    assert hits >= 120
    as_csv = sdk.models.download_batch_output(
        model.id, batch.id, tmp_path / "out.csv", format="csv"
    )
    header = next(csv.reader(as_csv.read_text().splitlines()))
    assert header == ["row_id", "prediction"] + [f"probability_{c}" for c in model.classes or []]
    with pytest.raises(NotFoundError):
        sdk.models.get_batch_prediction(model.id, "bp_000000000000000000000000")

    sdk.datasets.delete(dataset.id)
    with pytest.raises(NotFoundError):
        sdk.datasets.get(dataset.id)


def test_upload_streams_the_file_in_chunks(
    sdk: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "wide.csv"
    with path.open("w") as out:
        out.write("a,b,c,label\n")
        for i in range(120_000):
            out.write(f"{i},{i * 0.5},{i % 7},{i % 2}\n")
    size = path.stat().st_size
    reads: list[int] = []
    read = shardtrain.progress.CountingReader.read

    def spy(self: shardtrain.progress.CountingReader, n: int = -1) -> bytes:
        chunk = read(self, n)
        reads.append(len(chunk))
        return chunk

    monkeypatch.setattr(shardtrain.progress.CountingReader, "read", spy)
    dataset = sdk.datasets.upload(path, name="wide")
    assert dataset.bytes == size and dataset.name == "wide"
    assert sum(reads) == size
    assert len(reads) > 10 and max(reads) <= 64 * 1024  # never the whole file at once
    assert sdk.datasets.wait(dataset.id, timeout=120).rows == 120_000


def test_async_client_on_the_live_system(system: System, tmp_path: Path) -> None:
    path = tmp_path / "iris.csv"
    path.write_bytes(table_to_csv(iris_table()))

    async def scenario() -> tuple[str, list[str], str]:
        async with AsyncClient(api_key(system), system.base_url) as client:
            dataset = await client.datasets.wait((await client.datasets.upload(path)).id)
            spec = iris_spec(dataset.id).model_copy(
                update={"training": TrainingSpec(rounds=2, early_stopping=None)}
            )
            job = await client.jobs.create(spec)
            events = [e.type async for e in client.jobs.events(job.id, follow=True)]
            finished = await client.jobs.wait(job.id, progress=False, timeout=120)
            assert finished.model_id is not None
            predicted = await client.models.predict(
                finished.model_id,
                [{"sepal_length": 5.0, "sepal_width": 3.4, "petal_length": 1.5,
                  "petal_width": 0.2}],
            )  # fmt: skip
            table = await client.models.predict_table(
                finished.model_id, pa.table({"sepal_length": [5.0], "sepal_width": [3.4],
                                             "petal_length": [1.5], "petal_width": [0.2]})
            )  # fmt: skip
            assert table.column("prediction").to_pylist() == predicted.predictions
            batch = await client.models.batch_predict(finished.model_id, dataset.id)
            done = await client.models.wait_batch_prediction(
                finished.model_id, batch.id, timeout=120
            )
            assert (done.status, done.rows) == ("succeeded", 150), done.error
            output = await client.models.download_batch_output(
                finished.model_id, batch.id, tmp_path, format="csv"
            )
            assert output == tmp_path / f"{batch.id}.csv"
            assert len(output.read_text().splitlines()) == 151
            return finished.status, events, str(predicted.predictions[0])

    status, events, predicted = asyncio.run(scenario())
    assert status == "succeeded"
    assert events[0] == "job.created" and events.count("round.completed") == 2
    assert predicted in {"setosa", "versicolor", "virginica"}
