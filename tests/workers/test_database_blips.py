"""Workers and database blips, in-process on real SQL and Redis: which errors are an
outage worth riding out (on a PostgreSQL of the test's own, stopped and started again),
stale shard copies that stop and write nothing, prepare's bounded wait for an ingest,
and a re-sent round's wall time."""

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from own_postgres import OwnPostgres
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from app.db import OutageTooLong, is_transient_database_error, retry_transient, session_scope
from app.jobs.repository import JobRepository
from app.jobs.stages import finalize, merge, prepare, train
from app.paramstore import ParamStore
from app.tenancy.scope import SYSTEM

MakeDataset = Callable[[str, bytes], str]


# --- which errors are transient, on a server that really goes away ---------------------


@pytest.fixture(scope="module")
def own_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnPostgres]:
    server = OwnPostgres(tmp_path_factory.mktemp("pg"))
    server.start()
    yield server
    server.remove()


@pytest.fixture
def postgres_back(own_postgres: OwnPostgres) -> Iterator[OwnPostgres]:
    yield own_postgres
    if not _answers(own_postgres):
        own_postgres.start()


def _answers(server: OwnPostgres) -> bool:
    try:
        with create_engine(server.url()).connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except DBAPIError:
        return False


def _error_of(run: Callable[[], object]) -> BaseException:
    with pytest.raises(Exception) as caught:
        run()
    return caught.value


def test_a_restart_is_transient_and_a_bad_statement_is_not(postgres_back: OwnPostgres) -> None:
    engine = create_engine(postgres_back.url())
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
        postgres_back.stop()  # the open session ends with AdminShutdown
        mid_session = _error_of(lambda: conn.execute(text("SELECT 1")))
    refused = _error_of(lambda: engine.connect())  # nobody listens on the port
    postgres_back.start()
    with engine.connect() as conn:
        bad = _error_of(lambda: conn.execute(text("SELECT * FROM no_such_table")))
    assert is_transient_database_error(mid_session), repr(mid_session)
    assert is_transient_database_error(refused), repr(refused)
    assert isinstance(bad, ProgrammingError) and not is_transient_database_error(bad)
    assert not is_transient_database_error(ValueError("not a database error"))


def test_work_is_retried_until_the_database_is_back(postgres_back: OwnPostgres) -> None:
    sessions = sessionmaker(create_engine(postgres_back.url(), pool_pre_ping=True))
    with session_scope(sessions) as session:
        session.execute(text("SELECT 1"))  # a pooled connection the restart will kill
    postgres_back.stop()
    restart = threading.Timer(3.0, postgres_back.start)
    restart.start()
    attempts = []

    def read() -> int:
        attempts.append(time.monotonic())
        with session_scope(sessions) as session:
            return int(session.execute(text("SELECT 41 + 1")).scalar_one())

    try:
        assert retry_transient("a read", read, grace_s=60) == 42
    finally:
        restart.join()
    assert len(attempts) > 1  # it failed while the server was down, then succeeded


def test_an_outage_longer_than_the_grace_is_given_up(postgres_back: OwnPostgres) -> None:
    sessions = sessionmaker(create_engine(postgres_back.url()))
    postgres_back.stop()
    calls = []

    def write() -> None:
        calls.append(1)
        with session_scope(sessions) as session:
            session.execute(text("SELECT 1"))

    with pytest.raises(OutageTooLong, match="a write: still failing after 1 s"):
        retry_transient("a write", write, grace_s=1)
    assert len(calls) > 1


def test_a_bad_statement_is_raised_at_once(postgres_back: OwnPostgres) -> None:
    sessions = sessionmaker(create_engine(postgres_back.url()))
    calls = []

    def bad() -> None:
        calls.append(1)
        with session_scope(sessions) as session:
            session.execute(text("SELECT * FROM no_such_table"))

    with pytest.raises(ProgrammingError):
        retry_transient("a bad read", bad, grace_s=60)
    assert calls == [1]


# --- stale shard copies ----------------------------------------------------------------


def _watch(
    sessions: sessionmaker[Session], params: ParamStore, work: train.ShardWork
) -> Callable[[], bool]:
    def ask() -> bool:
        with session_scope(sessions) as session:
            return train.shard_still_wanted(session, params, work)

    return ask


def _read_work(
    sessions: sessionmaker[Session], params: ParamStore, job_id: str, round_: int, shard: int
) -> train.ShardWork:
    with session_scope(sessions) as session:
        work = train.read_shard_work(session, params, job_id, round_, shard)
    assert work is not None
    return work


# Many small batches over many epochs: a shard with dozens of checkpoints.
LONG_SHARD = {"training": {"batch_size": 1, "local_epochs": 30, "rounds": 2}}


def test_a_shard_of_a_job_cancelled_mid_training_stops_and_writes_nothing(  # type: ignore[no-untyped-def]
    client, started_job, sessions, store, params
) -> None:
    job_id = started_job(**LONG_SHARD)
    work = _read_work(sessions, params, job_id, 1, 0)
    ask, asked = _watch(sessions, params, work), []

    def cancelling_ask() -> bool:
        asked.append(1)
        if len(asked) == 3:  # the job is cancelled while the shard trains
            assert client.post(f"/v1/jobs/{job_id}/cancel").json()["status"] == "cancelled"
        return ask()

    watch = train.ShardWatch(cancelling_ask, is_outage=lambda _: False, every_s=0)
    assert train.run_shard(work, store, params, watch) is False
    # Stopped at the checkpoint after the cancel, not at the end of its 30 epochs.
    assert len(asked) == 3
    assert not params.has_shard(job_id, 1, 0)


def test_a_copy_whose_shard_another_copy_stored_stops_and_writes_nothing(  # type: ignore[no-untyped-def]
    started_job, sessions, store, params
) -> None:
    job_id = started_job(**LONG_SHARD)
    late = _read_work(sessions, params, job_id, 1, 0)
    first = _read_work(sessions, params, job_id, 1, 0)
    assert train.run_shard(first, store, params) is True  # the re-sent copy won
    stored = params.get_shard(job_id, 1, 0)
    watch = train.ShardWatch(_watch(sessions, params, late), is_outage=lambda _: False)
    assert train.run_shard(late, store, params, watch) is False
    again = params.get_shard(job_id, 1, 0)
    assert stored is not None and again is not None and again.seconds == stored.seconds


def test_a_copy_of_a_merged_round_stops_and_writes_nothing(  # type: ignore[no-untyped-def]
    started_job, sessions, store, params
) -> None:
    job_id = started_job(**LONG_SHARD, distribution={"shards": 2})
    late = _read_work(sessions, params, job_id, 1, 1)
    for shard in range(2):
        assert train.run_shard(_read_work(sessions, params, job_id, 1, shard), store, params)
    with session_scope(sessions) as session:
        assert merge.merge_round(session, store, params, job_id, 1).next == "round"
    params.delete_round(job_id, 1)  # as the merge task does once it has committed
    watch = train.ShardWatch(_watch(sessions, params, late), is_outage=lambda _: False)
    assert train.run_shard(late, store, params, watch) is False
    assert not params.has_shard(job_id, 1, 1)


def test_a_result_written_after_finalize_is_withdrawn(  # type: ignore[no-untyped-def]
    started_job, sessions, store, params, redis_client: redis.Redis
) -> None:

    job_id = started_job(training={"rounds": 1}, distribution={"shards": 2})
    results = []
    for shard in range(2):
        work = _read_work(sessions, params, job_id, 1, shard)
        assert train.run_shard(work, store, params)
        results.append(params.get_shard(job_id, 1, shard))
    with session_scope(sessions) as session:
        assert merge.merge_round(session, store, params, job_id, 1).next == "finalize"
    with session_scope(sessions) as session:
        assert finalize.finalize_job(session, store, job_id)
    params.delete_job(job_id)  # as the finalize task does once it has committed
    late = results[0]
    assert late is not None
    params.put_shard(job_id, 1, late)  # a copy that passed its last check just before
    with session_scope(sessions) as session:
        job = JobRepository(session, SYSTEM).get(job_id)
    assert not train.round_still_open(job, 1)
    train.withdraw_late_result(params, job, job_id, 1)
    assert redis_client.keys(f"shardtrain:{job_id}:*") == []


def test_an_outage_while_checking_lets_the_shard_train_on(  # type: ignore[no-untyped-def]
    started_job, sessions, store, params
) -> None:
    job_id = started_job(distribution={"shards": 2})
    work = _read_work(sessions, params, job_id, 1, 0)

    def unreachable() -> bool:
        raise redis.ConnectionError("Redis is restarting")

    watch = train.ShardWatch(
        unreachable, is_outage=lambda exc: isinstance(exc, redis.ConnectionError), every_s=0
    )
    assert train.run_shard(work, store, params, watch) is True
    assert params.has_shard(job_id, 1, 0)


# --- a re-sent round's wall time --------------------------------------------------------


def test_a_round_takes_at_least_its_slowest_shard_after_a_resend(  # type: ignore[no-untyped-def]
    started_job, sessions, store, params
) -> None:
    job_id = started_job(distribution={"shards": 2}, training={"rounds": 2})
    for shard in range(2):
        assert train.run_shard(_read_work(sessions, params, job_id, 1, shard), store, params)
    slow = params.get_shard(job_id, 1, 1)
    assert slow is not None
    # The first copy of shard 1 took 30 s; the watchdog then re-sent the round, which
    # restarts the round's clock, and the merge used the first copy's result.
    params.put_shard(
        job_id, 1, type(slow)(1, slow.state, slow.num_examples, slow.loss, seconds=30.0)
    )
    with session_scope(sessions) as session:
        job = JobRepository(session, SYSTEM).get(job_id, for_update=True)
        assert job is not None
        job.stage_started_at = time.time()
    with session_scope(sessions) as session:
        assert merge.merge_round(session, store, params, job_id, 1).next == "round"
    with session_scope(sessions) as session:
        (merged,) = JobRepository(session, SYSTEM).rounds(job_id)
        assert merged.slowest_shard_seconds == 30.0
        assert merged.seconds >= 30.0


# --- prepare's bounded wait for an ingest -----------------------------------------------


def test_prepare_waits_for_an_ingest_then_fails_naming_the_dataset(  # type: ignore[no-untyped-def]
    client: TestClient, sessions, tmp_path: Path
) -> None:
    # Uploaded but never ingested: the dataset stays `processing`, as after a lost ingest.
    uploaded = client.post("/v1/datasets", files={"file": ("iris.csv", b"a,b\n1,2\n")})
    assert uploaded.status_code == 201, uploaded.text
    dataset_id = uploaded.json()["id"]
    created = client.post("/v1/jobs", json={"dataset_id": dataset_id, "target": "b"})
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    now = time.time()
    with session_scope(sessions) as session:
        assert prepare.begin_prepare(session, job_id, max_wait_s=600, now=now) == "wait"
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"
    with session_scope(sessions) as session:
        assert prepare.begin_prepare(session, job_id, max_wait_s=600, now=now + 601) == "failed"
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "failed"
    assert job["error"]["code"] == "dataset_not_ready"
    message = job["error"]["message"]
    assert dataset_id in message and "still processing after 601 s" in message
    assert "600 s" in message
