"""Drive a job through its worker stages in this process, in order, for tests that
check the stages' logic and outputs without a Celery worker (the e2e suite has one)."""

from sqlalchemy.orm import Session, sessionmaker

from app.db import session_scope
from app.jobs import finalize, rounds
from app.jobs.plan import ShardPlan
from app.jobs.repository import JobRepository
from app.paramstore import ParamStore
from app.storage import BlobStore


def run_job(
    sessions: sessionmaker[Session], store: BlobStore, params: ParamStore, job_id: str
) -> None:
    with session_scope(sessions) as session:
        assert rounds.begin_prepare(session, job_id) == "build"
    with session_scope(sessions) as session:
        assert rounds.build_job_shards(session, store, params, job_id).next == "round"
        job = JobRepository(session).get(job_id)
        assert job is not None and job.plan is not None
        shards = ShardPlan.from_dict(job.plan).shards
    round_ = 1
    while True:
        for shard in range(shards):
            with session_scope(sessions) as session:
                rounds.train_shard(session, store, params, job_id, round_, shard)
        with session_scope(sessions) as session:
            decision = rounds.merge_round(session, store, params, job_id, round_)
        if decision.next != "round":
            break
        round_ = decision.round
    with session_scope(sessions) as session:
        finalize.finalize_job(session, store, job_id)
